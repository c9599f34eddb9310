#!/usr/bin/env bash
# The original's usage lines, by name:   ./run.sh NAME [extra flags...]
#   ./run.sh list                 lists the names
#   ./run.sh sinusoid             10-shot sinusoid MAML (train)
#   ./run.sh sinusoid_test 5      its test mode with K=5 (default 10)
#   ./run.sh rl_cheetah_dir       MAML-TRPO on half-cheetah forward/backward (resumes)
# Extra flags are passed through (later flags win), e.g. ./run.sh sinusoid --metatrain_iterations=100
# (sinusoid_experiment passes them to every training and test; SINE_ITERS=... sets iterations)
# Logs and checkpoints go to $LOGROOT (default ./logs).
#
# Deviations from the original's lines, all deliberate and documented in README.md:
# - sinusoid uses --update_lr=0.01, the paper's alpha (the original line kept the 0.001
#   default); `sinusoid_lr0.001` is the original line verbatim for comparison.
# - each baseline gets its own --logdir: the original's experiment name does not encode
#   --pretrain_iterations, so MAML and the pretrained baseline would share a directory.
# - RL locomotion lines pass --fd_base_eps=1.0 (what maml_rl's optimizer actually used) and
#   the settings of the checkpoints its test scripts loaded for the paper's figures.
set -euo pipefail
# The whole script is one { ... } block: bash parses it completely before running anything, so
# editing run.sh while a long training started from it is running cannot break that run.
{
cd "$(dirname "$0")"
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
LOGROOT="${LOGROOT:-logs}"
# OMNIGLOT=DIR, MINI=DIR, SINE_ITERS=N, RL_ITERS=N, AUTHORS_CKPT=PREFIX override the presets'
# data folders, training iterations and imported checkpoint (flags/experiments.py) when set.

name="${1:-list}"; shift || true
# The registry of named presets (flags/experiments.py) is asked with a real interpreter even
# when $PY is a stand-in (tests record the command lines through one).
REG_PY="${REG_PY:-.venv/bin/python}"
[ -x "$REG_PY" ] || REG_PY=python3
registry() { "$REG_PY" -m flags.experiments "$@"; }
main() { "$PY" main.py "$@"; }

# The main job (sinusoid_experiment). Each step's full output goes to a log file beside its
# run; the screen gets every 10,000th training line, one line per step, then the table.
logged() {  # logged LOG TAG CMD...: run CMD, output to LOG; on failure show LOG's end
  local log="$1" tag="$2" rc=0; shift 2
  mkdir -p "$(dirname "$log")"
  echo "=== $(date '+%F %T') $*" >> "$log"
  PYTHONUNBUFFERED=1 "$@" 2>&1 | tee -a "$log" \
    | { grep --line-buffered -E '^(Pretrain )?Iteration [0-9]*0000:' | sed -u "s/^/  $tag: /"
        true; } || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "run.sh: $tag: '$*' failed (exit $rc); the end of $log:" >&2
    tail -n 15 "$log" >&2
  fi
  return "$rc"
}
sine_chain() {  # sine_chain TAG NAME DIR [flags]: ./run.sh NAME, then NAME_test K, K = 5 10 20
  local tag="$1" name="$2" dir="$3" start=$SECONDS; shift 3
  logged "$dir/train.log" "$tag" "$0" "$name" "$@" || return
  echo "  $tag: trained in $((SECONDS - start)) s; final line: $(grep -E '^(Pretrain )?Iteration' "$dir/train.log" | tail -n 1)"
  start=$SECONDS
  for k in 5 10 20; do logged "$dir/test_K$k.log" "$tag" "$0" "${name}_test" "$k" "$@" || return; done
  echo "  $tag: tested with K = 5, 10, 20 in $((SECONDS - start)) s"
}
sine_experiment() {  # the two trainings run side by side: each keeps about one core busy
  local started=$SECONDS figures="$LOGROOT/figures" maml_pid pre_pid ok=1
  echo "sinusoid_experiment: MAML (the released code's line, alpha 0.001) and the pretrained"
  echo "baseline, ${SINE_ITERS:-70000} iterations each, side by side; then 600 test tasks each with K = 5, 10, 20."
  echo "Full output: $LOGROOT/sine_lr0.001/*.log, $LOGROOT/sine_pretrained/*.log"
  sine_chain MAML sinusoid_lr0.001 "$LOGROOT/sine_lr0.001" "$@" & maml_pid=$!
  sine_chain pretrained sinusoid_pretrained "$LOGROOT/sine_pretrained" "$@" & pre_pid=$!
  wait "$maml_pid" || ok=0
  wait "$pre_pid" || ok=0
  [ "$ok" = 1 ] || exit 1
  logged "$figures/plot_sinusoid_adaptation.log" figures \
    "$PY" scripts/plot_sinusoid_adaptation.py --logroot="$LOGROOT" --out="$figures" || exit 1
  echo
  "$PY" -m maml_tf.compare --logroot="$LOGROOT" --tables=sinusoid \
    --runs=sine_lr0.001,sine_pretrained --plot_dir="$figures"
  echo "Figure 2 (adaptation to one task, before and after 1 and 10 steps): $figures/sinusoid_adaptation.png"
  echo "sinusoid_experiment: done in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
}
# The authors' released MiniImagenet 5-way 1-shot checkpoint (cbfinn/maml's logs/miniimagenet1shot/
# .../model59000) is the miniimagenet_1shot_authors preset's; AUTHORS_CKPT=PREFIX to use a copy
# from elsewhere. RL presets train with --resume, so running a line again continues from its
# latest checkpoint (every iteration); RL_ITERS sets the meta-iterations (default 500).
preset() {  # preset NAME [flags...]: run the registry's preset NAME with run.sh's environment
  local name="$1" info kind env flag positional extra=(); shift
  info=$(registry shell "$name") || exit 2
  read -r kind env flag positional <<< "$info"
  # Test entries take K as their first argument if it is a number (default: the preset's).
  if [ "$positional" = k ] && [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    extra+=(--update_batch_size="$1"); shift
  fi
  if [ "$env" != - ] && [ -n "${!env:-}" ]; then extra+=("--$flag=${!env}"); fi
  if [ "$kind" != rl ]; then
    [ -n "${OMNIGLOT:-}" ] && extra+=(--omniglot_folder="$OMNIGLOT")
    [ -n "${MINI:-}" ] && extra+=(--miniimagenet_folder="$MINI")
  fi
  case "$kind" in
    supervised) main --experiment="$name" --logroot="$LOGROOT" "${extra[@]}" "$@" ;;
    import) "$PY" import_tf1_checkpoint.py --experiment="$name" --logroot="$LOGROOT" \
              ${AUTHORS_CKPT:+--tf1_checkpoint="$AUTHORS_CKPT"} "${extra[@]}" "$@" ;;
    rl) "$PY" -m rl.main --experiment="$name" --logroot="$LOGROOT" "${extra[@]}" "$@" ;;
  esac
}
rl_compare() {  # the results of ENV's test presets (the registry's) found under $LOGROOT
  local env="$1" files; shift
  files=$(registry results "$env" --logroot="$LOGROOT") || exit 2
  [ -n "$files" ] || { echo "run.sh: no test results for $env under $LOGROOT/rl" >&2; exit 2; }
  "$PY" -m rl.compare --results="${files//$'\n'/,}" --plot="$LOGROOT/rl/${env}_curves.png" "$@"
}

case "$name" in
  list) registry list
    sed -n -e 's/^  #: \([A-Za-z0-9_]*\)  *\(.*\)$/\1\t\2/p' "$0" | column -t -s $'\t' ;;
  #: sinusoid_experiment  the main job: MAML (alpha 0.001) and pretrained, tests K=5,10,20, table
  sinusoid_experiment) sine_experiment "$@" ;;
  #: rl_ENV_compare  table beside paper_numbers.json and Figure 4/5 plots of ENV's results
  rl_*_compare)
    env="${name#rl_}"; env="${env%_compare}"
    registry shell "rl_$env" > /dev/null || exit 2
    rl_compare "$env" "$@" ;;
  *) preset "$name" "$@" ;;
esac
exit
}

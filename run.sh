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
OMNIGLOT="${OMNIGLOT:-./data/omniglot_resized}"
MINI="${MINI:-./data/miniImagenet}"

name="${1:-list}"; shift || true
main() { "$PY" main.py "$@"; }
# Test-mode K for the *_test entries: first extra argument if it is a number.
k_or() { if [[ "${1:-}" =~ ^[0-9]+$ ]]; then echo "$1"; else echo "$2"; fi; }

SINE_ITERS="${SINE_ITERS:-70000}"  # training iterations of every sinusoid line (the paper's)
SINE="--datasource=sinusoid --norm=None --update_batch_size=10"
SINE_MAML="$SINE --metatrain_iterations=$SINE_ITERS --update_lr=0.01"
SINE_PRE="$SINE --pretrain_iterations=$SINE_ITERS --metatrain_iterations=0 --update_lr=0.01"
OMNI="--datasource=omniglot --omniglot_folder=$OMNIGLOT --metatrain_iterations=60000"
O5W1="$OMNI --meta_batch_size=32 --update_batch_size=1 --update_lr=0.4 --num_updates=1"
O5W5="$OMNI --meta_batch_size=32 --update_batch_size=5 --update_lr=0.4 --num_updates=1"
O20W1="$OMNI --meta_batch_size=16 --update_batch_size=1 --num_classes=20 --update_lr=0.1 --num_updates=5"
O20W5="$OMNI --meta_batch_size=16 --update_batch_size=5 --num_classes=20 --update_lr=0.1 --num_updates=5"
MI="--datasource=miniimagenet --miniimagenet_folder=$MINI --metatrain_iterations=60000 --update_lr=0.01 --num_updates=5 --num_classes=5 --num_filters=32 --max_pool=True"
M1="$MI --meta_batch_size=4 --update_batch_size=1"
M5="$MI --meta_batch_size=4 --update_batch_size=5"
TEST="--train=False --test_set=True"

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
  echo "baseline, $SINE_ITERS iterations each, side by side; then 600 test tasks each with K = 5, 10, 20."
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
# .../model59000); AUTHORS_CKPT=PREFIX to use a copy from elsewhere.
AUTHORS_CKPT="${AUTHORS_CKPT:-../shared/reference/authors_checkpoint/miniimagenet1shot/model59000}"

# RL (python -m rl.main): ENV is point, cheetah_vel, cheetah_dir, ant_vel or ant_dir; per-task
# defaults (fast_lr, meta-batch, horizon, ...) come from flags/rl.py. Training always passes
# --resume, so running a line again continues from its latest checkpoint (every iteration).
RL_ITERS="${RL_ITERS:-500}"
rl() {  # rl ENV METHOD [flags...]: METHOD maml|pretrained|oracle trains, *_test / random test
  local env="$1" method="$2"; shift 2
  local dir="$LOGROOT/rl/${env}_${method%_test}" common=(--env_name="$env" --seed=1)
  # locomotion trains with the FD step maml_rl's optimizer actually passed (docs/RL.md)
  local train=("${common[@]}" --mode=train --resume --n_itr="$RL_ITERS")
  [ "$env" = point ] || train+=(--fd_base_eps=1.0)
  # MAML: the configuration of the checkpoint the released test script loaded for the
  # paper's figure, where it differs from the flag defaults (PROTOCOL.md's; docs/RL.md)
  local released=()
  case "$env" in
    cheetah_dir) released=(--step_size=0.02) ;;      # maml1_fbs20_mbs40_flr_0.1_mlr0.02
    cheetah_vel) released=(--fast_batch_size=10) ;;  # maml1_fbs10_mbs40_flr_0.1_mlr0.01
  esac
  case "$method" in
    maml) "$PY" -m rl.main "${train[@]}" "${released[@]}" --logdir="$dir" "$@" ;;
    pretrained) "$PY" -m rl.main "${train[@]}" --use_maml=False --logdir="$dir" "$@" ;;
    oracle) "$PY" -m rl.main "${train[@]}" --use_maml=False --oracle --logdir="$dir" "$@" ;;
    maml_test) "$PY" -m rl.main "${common[@]}" --mode=test --logdir="$dir" "$@" ;;
    pretrained_test)  # its test step size comes from flags/rl.py (the released scripts')
      "$PY" -m rl.main "${common[@]}" --mode=test --use_maml=False --logdir="$dir" "$@" ;;
    oracle_test) "$PY" -m rl.main "${common[@]}" --mode=test --use_maml=False --oracle --logdir="$dir" "$@" ;;
    random) "$PY" -m rl.main "${common[@]}" --mode=test --test_init=random --logdir="$dir" "$@" ;;
  esac
}
rl_compare() {  # every test result of ENV found under $LOGROOT/rl, beside paper_numbers.json
  local env="$1" files=(); shift
  for m in maml pretrained random oracle; do
    local f="$LOGROOT/rl/${env}_${m}/test_${m}.pkl"; [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || { echo "run.sh: no test results for $env under $LOGROOT/rl" >&2; exit 2; }
  "$PY" -m rl.compare --results="$(IFS=,; echo "${files[*]}")" --plot="$LOGROOT/rl/${env}_curves.png" "$@"
}

case "$name" in
  list) sed -n -e 's/^  \([a-z0-9_.]*\))  *#\(.*\)$/\1\t\2/p' \
              -e 's/^  #: \([A-Za-z0-9_]*\)  *\(.*\)$/\1\t \2/p' "$0" | column -t -s $'\t' ;;
  # --- sinusoid ---------------------------------------------------------------------------
  sinusoid_experiment)  # the main job: MAML (alpha 0.001) and pretrained, tests K=5,10,20, table
    sine_experiment "$@" ;;
  sinusoid)  # 10-shot sinusoid MAML, alpha 0.01 (paper)
    main $SINE_MAML --logdir="$LOGROOT/sine/" "$@" ;;
  sinusoid_test)  # test it with K = $1 (5, 10 or 20; default 10)
    k=$(k_or "${1:-}" 10); [[ "${1:-}" =~ ^[0-9]+$ ]] && shift
    main $SINE_MAML --logdir="$LOGROOT/sine/" --train=False --update_batch_size="$k" --train_update_batch_size=10 "$@" ;;
  sinusoid_lr0.001)  # the original usage line verbatim (alpha 0.001)
    main $SINE --metatrain_iterations="$SINE_ITERS" --logdir="$LOGROOT/sine_lr0.001/" "$@" ;;
  sinusoid_lr0.001_test)  # test it with K = $1
    k=$(k_or "${1:-}" 10); [[ "${1:-}" =~ ^[0-9]+$ ]] && shift
    main $SINE --metatrain_iterations="$SINE_ITERS" --logdir="$LOGROOT/sine_lr0.001/" --train=False --update_batch_size="$k" --train_update_batch_size=10 "$@" ;;
  sinusoid_pretrained)  # baseline: pretrained on all tasks (Adam on the support loss)
    main $SINE_PRE --logdir="$LOGROOT/sine_pretrained/" "$@" ;;
  sinusoid_pretrained_test)  # fine-tune it with K = $1 (step: paper Fig. 6, 0.01 if K=5 else 0.02)
    k=$(k_or "${1:-}" 10); [[ "${1:-}" =~ ^[0-9]+$ ]] && shift
    step=0.02; [ "$k" = 5 ] && step=0.01  # --update_lr=... after K overrides it
    main $SINE_PRE --logdir="$LOGROOT/sine_pretrained/" --train=False --update_batch_size="$k" --train_update_batch_size=10 --train_update_lr=0.01 --update_lr="$step" "$@" ;;
  sinusoid_oracle)  # baseline: oracle (amplitude and phase as inputs)
    main $SINE_PRE --baseline=oracle --logdir="$LOGROOT/sine_oracle/" "$@" ;;
  sinusoid_oracle_test)  # test it with K = $1
    k=$(k_or "${1:-}" 10); [[ "${1:-}" =~ ^[0-9]+$ ]] && shift
    main $SINE_PRE --baseline=oracle --logdir="$LOGROOT/sine_oracle/" --train=False --update_batch_size="$k" --train_update_batch_size=10 "$@" ;;
  # --- Omniglot ---------------------------------------------------------------------------
  omniglot_5way_1shot)  # Omniglot 5-way 1-shot
    main $O5W1 --logdir="$LOGROOT/omniglot5way/" "$@" ;;
  omniglot_5way_1shot_test)  # its test (600 test-set tasks)
    main $O5W1 --logdir="$LOGROOT/omniglot5way/" $TEST "$@" ;;
  omniglot_5way_5shot)  # Omniglot 5-way 5-shot
    main $O5W5 --logdir="$LOGROOT/omniglot5way/" "$@" ;;
  omniglot_5way_5shot_test)  # its test
    main $O5W5 --logdir="$LOGROOT/omniglot5way/" $TEST "$@" ;;
  omniglot_20way_1shot)  # Omniglot 20-way 1-shot
    main $O20W1 --logdir="$LOGROOT/omniglot20way/" "$@" ;;
  omniglot_20way_1shot_test)  # its test
    main $O20W1 --logdir="$LOGROOT/omniglot20way/" $TEST "$@" ;;
  omniglot_20way_5shot)  # Omniglot 20-way 5-shot
    main $O20W5 --logdir="$LOGROOT/omniglot20way/" "$@" ;;
  omniglot_20way_5shot_test)  # its test
    main $O20W5 --logdir="$LOGROOT/omniglot20way/" $TEST "$@" ;;
  omniglot_noconv_5way_1shot)  # Omniglot 5-way 1-shot, fully connected (--conv=False)
    main $O5W1 --conv=False --logdir="$LOGROOT/omniglot5way_noconv/" "$@" ;;
  omniglot_noconv_5way_1shot_test)  # its test
    main $O5W1 --conv=False --logdir="$LOGROOT/omniglot5way_noconv/" $TEST "$@" ;;
  omniglot_noconv_5way_5shot)  # Omniglot 5-way 5-shot, fully connected
    main $O5W5 --conv=False --logdir="$LOGROOT/omniglot5way_noconv/" "$@" ;;
  omniglot_noconv_5way_5shot_test)  # its test
    main $O5W5 --conv=False --logdir="$LOGROOT/omniglot5way_noconv/" $TEST "$@" ;;
  # --- MiniImagenet -----------------------------------------------------------------------
  miniimagenet_1shot)  # MiniImagenet 5-way 1-shot
    main $M1 --logdir="$LOGROOT/miniimagenet1shot/" "$@" ;;
  miniimagenet_1shot_test)  # its test
    main $M1 --logdir="$LOGROOT/miniimagenet1shot/" $TEST "$@" ;;
  miniimagenet_5shot)  # MiniImagenet 5-way 5-shot (meta-batch 4 as the code; paper: 2)
    main $M5 --logdir="$LOGROOT/miniimagenet5shot/" "$@" ;;
  miniimagenet_5shot_test)  # its test
    main $M5 --logdir="$LOGROOT/miniimagenet5shot/" $TEST "$@" ;;
  miniimagenet_1shot_fo)  # MiniImagenet 5-way 1-shot, first-order (--stop_grad)
    main $M1 --stop_grad=True --logdir="$LOGROOT/miniimagenet1shot/" "$@" ;;
  miniimagenet_1shot_fo_test)  # its test
    main $M1 --stop_grad=True --logdir="$LOGROOT/miniimagenet1shot/" $TEST "$@" ;;
  miniimagenet_5shot_fo)  # MiniImagenet 5-way 5-shot, first-order
    main $M5 --stop_grad=True --logdir="$LOGROOT/miniimagenet5shot/" "$@" ;;
  miniimagenet_5shot_fo_test)  # its test
    main $M5 --stop_grad=True --logdir="$LOGROOT/miniimagenet5shot/" $TEST "$@" ;;
  miniimagenet_1shot_authors)  # import the authors' released 1-shot checkpoint ($AUTHORS_CKPT)
    "$PY" import_tf1_checkpoint.py $M1 --tf1_checkpoint="$AUTHORS_CKPT" --logdir="$LOGROOT/miniimagenet1shot_authors/" "$@" ;;
  miniimagenet_1shot_authors_test)  # its test (600 test-set tasks; --test_seed=N: other tasks)
    main $M1 --logdir="$LOGROOT/miniimagenet1shot_authors/" $TEST "$@" ;;
  # --- RL (section 5.3); ENV = point, cheetah_vel, cheetah_dir, ant_vel, ant_dir ----------
  #: rl_ENV  MAML-TRPO on ENV, $RL_ITERS (500) meta-iterations, resumes; e.g. rl_cheetah_dir
  #: rl_ENV_pretrained  baseline: TRPO on all tasks, no inner step
  #: rl_ENV_oracle  baseline: goal in the observation
  #: rl_ENV_test  test protocol (40 goals, 3 steps) on the best iteration; also _pretrained_test, _oracle_test
  #: rl_ENV_random  baseline: test protocol from a random initialisation
  #: rl_ENV_compare  table beside paper_numbers.json and Figure 4/5 plots of ENV's results
  rl_*)
    rest="${name#rl_}"
    for env in point cheetah_vel cheetah_dir ant_vel ant_dir; do
      case "$rest" in
        "$env") rl "$env" maml "$@"; exit ;;
        "${env}_compare") rl_compare "$env" "$@"; exit ;;
        "${env}_"*) m="${rest#"${env}_"}"
          case "$m" in pretrained|oracle|random|test|pretrained_test|oracle_test)
            [ "$m" = test ] && m=maml_test; rl "$env" "$m" "$@"; exit ;; esac ;;
      esac
    done
    echo "run.sh: unknown RL name '$name'; ./run.sh list shows the forms" >&2; exit 2 ;;
  *) echo "run.sh: unknown name '$name'; ./run.sh list shows the names" >&2; exit 2 ;;
esac
exit
}

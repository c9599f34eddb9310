#!/usr/bin/env bash
# The original's usage lines, by name:   ./run.sh NAME [extra flags...]
#   ./run.sh list                 lists the names
#   ./run.sh sinusoid             10-shot sinusoid MAML (train)
#   ./run.sh sinusoid_test 5      its test mode with K=5 (default 10)
#   ./run.sh rl_cheetah_dir       MAML-TRPO on half-cheetah forward/backward (resumes)
# Extra flags are passed through (later flags win), e.g. ./run.sh sinusoid --metatrain_iterations=100
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

SINE="--datasource=sinusoid --norm=None --update_batch_size=10"
SINE_MAML="$SINE --metatrain_iterations=70000 --update_lr=0.01"
SINE_PRE="$SINE --pretrain_iterations=70000 --metatrain_iterations=0 --update_lr=0.01"
OMNI="--datasource=omniglot --omniglot_folder=$OMNIGLOT --metatrain_iterations=60000"
O5W1="$OMNI --meta_batch_size=32 --update_batch_size=1 --update_lr=0.4 --num_updates=1"
O5W5="$OMNI --meta_batch_size=32 --update_batch_size=5 --update_lr=0.4 --num_updates=1"
O20W1="$OMNI --meta_batch_size=16 --update_batch_size=1 --num_classes=20 --update_lr=0.1 --num_updates=5"
O20W5="$OMNI --meta_batch_size=16 --update_batch_size=5 --num_classes=20 --update_lr=0.1 --num_updates=5"
MI="--datasource=miniimagenet --miniimagenet_folder=$MINI --metatrain_iterations=60000 --update_lr=0.01 --num_updates=5 --num_classes=5 --num_filters=32 --max_pool=True"
M1="$MI --meta_batch_size=4 --update_batch_size=1"
M5="$MI --meta_batch_size=4 --update_batch_size=5"
TEST="--train=False --test_set=True"
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
  sinusoid_experiment)  # the main job: train 10-shot sinusoid MAML, test K=5,10,20, compare
    "$0" sinusoid "$@"
    for k in 5 10 20; do "$0" sinusoid_test "$k"; done
    "$PY" -m maml_tf.compare --logroot="$LOGROOT" ;;
  sinusoid)  # 10-shot sinusoid MAML, alpha 0.01 (paper)
    main $SINE_MAML --logdir="$LOGROOT/sine/" "$@" ;;
  sinusoid_test)  # test it with K = $1 (5, 10 or 20; default 10)
    k=$(k_or "${1:-}" 10); [[ "${1:-}" =~ ^[0-9]+$ ]] && shift
    main $SINE_MAML --logdir="$LOGROOT/sine/" --train=False --update_batch_size="$k" --train_update_batch_size=10 "$@" ;;
  sinusoid_lr0.001)  # the original usage line verbatim (alpha 0.001)
    main $SINE --metatrain_iterations=70000 --logdir="$LOGROOT/sine_lr0.001/" "$@" ;;
  sinusoid_lr0.001_test)  # test it with K = $1
    k=$(k_or "${1:-}" 10); [[ "${1:-}" =~ ^[0-9]+$ ]] && shift
    main $SINE --metatrain_iterations=70000 --logdir="$LOGROOT/sine_lr0.001/" --train=False --update_batch_size="$k" --train_update_batch_size=10 "$@" ;;
  sinusoid_pretrained)  # baseline: pretrained on all tasks (Adam on the support loss)
    main $SINE_PRE --logdir="$LOGROOT/sine_pretrained/" "$@" ;;
  sinusoid_pretrained_test)  # fine-tune it with K = $1 (step size: --update_lr, default 0.01)
    k=$(k_or "${1:-}" 10); [[ "${1:-}" =~ ^[0-9]+$ ]] && shift
    main $SINE_PRE --logdir="$LOGROOT/sine_pretrained/" --train=False --update_batch_size="$k" --train_update_batch_size=10 --train_update_lr=0.01 "$@" ;;
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

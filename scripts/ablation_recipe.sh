#!/usr/bin/env bash
# Issue 12's recipe ablation: vrnn-gauss, cpu preset, from scratch, the same seed and the same number of
# updates per arm, scored on the VALIDATION split only (the trainer validates after every epoch and at
# the end; never the test split). Two arms at a time, one thread each, niced.
#   bash scripts/ablation_recipe.sh DATA OUT_ROOT [STEPS] [PRECISION]
# then: python scripts/ablation_table.py OUT_ROOT  (writes the table of docs/ablation.md)
# SEED=N another seed (default 0). ONLY="arm arm ..." runs only those arms (h-sigma-frame-lr was added after the first seven had run).
set -euo pipefail
DATA=${1:?corpus folder}; ROOT=${2:?output folder}; STEPS=${3:-100}; PREC=${4:-fp32}
PY=${PYTHON:-python3}
COMMON=(--data "$DATA" --preset cpu --family vrnn-gauss --seed "${SEED:-0}" --batch-size 64 --steps "$STEPS"
        --precision "$PREC" --threads 1 --snapshot-every 0 --quiet)
declare -A ARMS=(
  [a-today]=""
  [b-sigma-bias]="--sigma-bias 0.6"
  [c-frame-loss]="--loss-scale frame"
  [d-max-norm]="--max-norm 1.9365"
  [e-carry-state]="--carry-state 4"
  [f-lr-cosine]="--lr 1e-3 --lr-schedule cosine --warmup-steps 10"
  [g-all]="--sigma-bias 0.6 --loss-scale frame --max-norm 1.9365 --carry-state 4 --lr 1e-3 --lr-schedule cosine --warmup-steps 10"
  [h-sigma-frame-lr]="--sigma-bias 0.6 --loss-scale frame --lr 1e-3 --lr-schedule cosine --warmup-steps 10"
)
mkdir -p "$ROOT"
run() {  # one arm; --resume makes a re-run continue where a stopped one left off
  local name=$1
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 "$PY" -m vrnn train "${COMMON[@]}" ${ARMS[$name]} \
    --out "$ROOT/$name" --resume > "$ROOT/$name.log" 2>&1 || echo "$name failed (see $ROOT/$name.log)"
}
names=(${ONLY:-a-today b-sigma-bias c-frame-loss d-max-norm e-carry-state f-lr-cosine g-all h-sigma-frame-lr})
for ((i = 0; i < ${#names[@]}; i += 2)); do
  run "${names[i]}" &
  if ((i + 1 < ${#names[@]})); then run "${names[i + 1]}" & fi
  wait
done

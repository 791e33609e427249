#!/usr/bin/env bash
# Retrain the five bundled models (issue 12): one shared budget, the same seed, the same recipe, each
# kept by its best validation ELBO (best.safetensors), then install them in assets/checkpoints/ ONCE.
#
#   bash scripts/train_bundled.sh            # train (or continue: every run is --resume safe; stop with
#                                            #   Ctrl-C / kill -TERM, the runs save and stop after the step)
#   bash scripts/train_bundled.sh status     # steps done and best validation ELBO of each run
#   bash scripts/train_bundled.sh install    # only when all five reached STEPS: copy each best.safetensors
#                                            #   to assets/checkpoints/<family>.safetensors and its
#                                            #   metrics.jsonl to assets/checkpoints/<family>.metrics.jsonl
#
# Environment (defaults in brackets): DATA [data/allison], RUNS [runs/bundled], STEPS [10000 updates of
# 64 windows = 5x the first bundled models], SEED [0], PARALLEL [2 runs at a time, one thread each],
# PRECISION [auto: bf16 on a CPU with avx512_bf16/AMX or a bf16 CUDA device, fp32 elsewhere], PYTHON
# [python3], RECIPE [the recipe chosen in docs/ablation.md; set RECIPE="" for the first models' recipe],
# NICE [10: the runs yield to interactive work; 0 where nothing else runs], INIT [empty: random weights; a folder such as assets/checkpoints: each run starts from INIT/<family>.safetensors
# (--init-from: weights only; Adam, steps and schedule start afresh)].
#
# Wall time: STEPS x seconds per update x 5 / PARALLEL. Measured (issue 12, this shared 2-core AMD EPYC
# without bf16, so fp32; one thread per run, vrnn-gauss, 64 x 40 frames): 2.1-8.4 s per update while two
# runs shared the machine with other work (load average 4-11), 2.7-3.8 s for a lone step at load 4-5.
# The GMM families take about 1.4x longer (the first bundled runs). So 10,000 updates x 5 families / 2 at a
# time is roughly 17-68 h here; on a CPU with avx512_bf16/AMX or a GPU (--precision auto picks bf16) far
# less. docs/ablation.md chose RECIPE (a short budget: 100 updates per arm).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/allison}
RUNS=${RUNS:-runs/bundled}
STEPS=${STEPS:-10000}
SEED=${SEED:-0}
PARALLEL=${PARALLEL:-2}
PRECISION=${PRECISION:-auto}
PY=${PYTHON:-python3}
INIT=${INIT:-}
NICE=${NICE:-10}
RECIPE=${RECIPE---sigma-bias 0.6 --loss-scale frame --lr 1e-3 --lr-schedule cosine --warmup-steps 200}
FAMILIES=(rnn-gauss rnn-gmm vrnn-i-gauss vrnn-gauss vrnn-gmm)

steps_done() {  # steps of RUNS/<family>/last.safetensors (0 when there is none)
  "$PY" - "$RUNS/$1/last.safetensors" <<'EOF'
import sys
from pathlib import Path
p = Path(sys.argv[1])
if not p.is_file():
    print(0)
else:
    from vrnn.checkpoint import read_checkpoint
    info, _ = read_checkpoint(p)
    t = info["training"]
    print(t["steps"], f"best valid ELBO {t['best_valid_elbo_per_sequence']:.1f} nats/sequence", t.get("precision", "?"))
EOF
}

pids=()
start() {  # one run in the background (its own pid in pids, so a stop reaches the trainer itself)
  local f=$1 init=()
  mkdir -p "$RUNS"
  if [[ -n "$INIT" ]]; then init=(--init-from "$INIT/$f.safetensors"); fi
  # shellcheck disable=SC2086  # RECIPE is a list of flags
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n "$NICE" "$PY" -m vrnn train --data "$DATA" --preset cpu --family "$f" \
    --out "$RUNS/$f" --steps "$STEPS" --seed "$SEED" --batch-size 64 --precision "$PRECISION" --threads 1 \
    --snapshot-every 1000 --checkpoint-minutes 5 --resume "${init[@]}" $RECIPE --quiet >> "$RUNS/$f.log" 2>&1 &
  pids+=($!)
}

case "${1:-train}" in
  train)
    # SIGINT/SIGTERM: every running trainer saves last.safetensors after its step and stops
    trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait; echo "stopped; run again to continue"; exit 130' INT TERM
    running=0
    for f in "${FAMILIES[@]}"; do
      start "$f"
      running=$((running + 1))
      if ((running >= PARALLEL)); then
        wait -n || echo "a run stopped with an error: see $RUNS/*.log; run this script again to continue"
        running=$((running - 1))
      fi
    done
    wait
    "$0" status
    ;;
  status)
    for f in "${FAMILIES[@]}"; do echo "$f: $(steps_done "$f")"; done
    ;;
  install)
    for f in "${FAMILIES[@]}"; do
      done_steps=$(steps_done "$f" | cut -d' ' -f1)
      if ((done_steps < STEPS)); then
        echo "$f has $done_steps of $STEPS steps: nothing installed (every replacement adds its size to every clone)"
        exit 1
      fi
    done
    for f in "${FAMILIES[@]}"; do
      cp "$RUNS/$f/best.safetensors" "assets/checkpoints/$f.safetensors"
      cp "$RUNS/$f/metrics.jsonl" "assets/checkpoints/$f.metrics.jsonl"
      echo "installed $f"
    done
    echo "Now update assets/README.md (budget, recipe, precision) and regenerate docs/results.md."
    ;;
  *)
    echo "usage: $0 [train|status|install]" >&2
    exit 2
    ;;
esac

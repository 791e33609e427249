"""Choose peak picking per signal on the VALIDATION split (never the test split): one command.

    python -m vrnn corpus --out data/allison --align valid
    python scripts/tune_segmentation.py --corpus data/allison assets/checkpoints/*.safetensors

For each signal (delta, kl, kl_dims of every VRNN checkpoint; the flux, energy and random baselines) it scores
every (min_distance, prominence) of the grid vrnn.segmentation.MIN_DISTANCES x PROMINENCES and keeps the one
with the best pooled R-value over all phone boundaries at 20 ms (for a model signal: the mean over the
checkpoints given). The R-value, unlike F1, penalises over-segmentation: at 20 ms, dense random peaks reach
a high F1. Prints the choice as the TUNED table of vrnn/segmentation.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402

from vrnn.boundaries import MODEL_SIGNALS, RANDOM_SEEDS, PeakPicking  # noqa: E402
from vrnn.data import Corpus  # noqa: E402
from vrnn.segmentation import MIN_DISTANCES, PROMINENCES, collect, score_signal  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--corpus", default="data/allison")
    p.add_argument("--split", default="valid", choices=("valid",), help="tuning happens on valid only")
    p.add_argument("--tolerance", type=float, default=0.02)
    args = p.parse_args()
    clips = collect(args.checkpoints, Corpus.open(args.corpus), args.split, progress=False)
    sources = [s for s in clips[0].signals if s != "baseline" and clips[0].signals[s]]
    jobs = {name: [(s, name) for s in sources] for name in MODEL_SIGNALS}
    jobs.update({"flux": [("baseline", "flux")], "energy": [("baseline", "energy")], "random": [("baseline", "random")]})
    chosen = {}
    for name, pairs in jobs.items():
        best = None
        for md in MIN_DISTANCES:
            for pr in PROMINENCES:
                pk = PeakPicking(min_distance=md, prominence=pr)
                seeds = RANDOM_SEEDS if name == "random" else (0,)
                scores = [score_signal(clips, s, n, pk, args.tolerance, seed)[0]["all"] for s, n in pairs for seed in seeds]
                key = (float(np.mean([x.r_value for x in scores])), float(np.mean([x.f1 for x in scores])))
                if best is None or key > best[0]:
                    best = (key, pk)
        chosen[name] = best[1]
        print(f"# {name}: R-value {best[0][0]:.3f}, F1 {best[0][1]:.3f} on {args.split}", flush=True)
    print("TUNED = {")
    for name, pk in chosen.items():
        print(f'    "{name}": PeakPicking(min_distance={pk.min_distance}, prominence={pk.prominence}),')
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

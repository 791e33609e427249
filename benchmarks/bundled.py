"""The engine against the straightforward reference on the bundled trained checkpoints (not random weights).

    python benchmarks/bundled.py [--corpus data/allison] [--seconds 30]

For each checkpoint in assets/checkpoints: `vrnn.analyze` vs `reference_analyze` on the first `--seconds`
of the corpus's test split (largest difference of log p(x_t | .), KL_t and delta_t relative to the
quantity's largest magnitude; the ELBO's relative difference), and 5 s of `vrnn.generate` vs
`reference_generate` for seed 1. Prints one line per checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from engine import analysis_errors, rel_err  # noqa: E402
from reference import ReferenceVRNN, reference_analyze, reference_generate  # noqa: E402

from vrnn import SAMPLE_RATE, analyze, generate, load_checkpoint  # noqa: E402
from vrnn.data import Corpus  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(ROOT / "data" / "allison"))
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    wave = np.asarray(Corpus.open(args.corpus).audio("test")[:int(args.seconds * SAMPLE_RATE)], dtype=np.float32)
    if np.abs(wave).max() > 2:  # int16 samples
        wave = wave / 32768.0
    for path in sorted((ROOT / "assets" / "checkpoints").glob("*.safetensors")):
        model = load_checkpoint(path)
        ref = ReferenceVRNN.from_model(model)
        out = analysis_errors(analyze(model, wave), reference_analyze(ref, wave))
        out["audio_5s"] = rel_err(generate(model, 5.0, seed=1), reference_generate(ref, 5.0, seed=1))
        print(f"{path.name:28s} " + "  ".join(f"{k} {v:.1e}" for k, v in out.items()))


if __name__ == "__main__":
    main()

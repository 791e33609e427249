"""The fast path against the readable model on the bundled trained checkpoints (not random weights).

    python benchmarks/bundled.py [--corpus data/allison --seconds 30]

For each checkpoint in assets/checkpoints and each clip (the example clips in assets/examples, or the
first `--seconds` of a corpus's test split with `--corpus`): `vrnn.analyze` (the fast path) against
`analyze(..., fast=False)` (the readable model), in float32 and in float64, printing the largest
absolute difference of log p(x_t | .), KL_t, delta_t, the posterior mean (nats, units of z) and the
ELBO (nats); then 5 s of `vrnn.generate` against `generate(..., fast=False)` for seed 1 (largest
absolute sample difference). The issue's bar: float64 equal to 1e-9 (tests/test_fused.py checks it on
one clip).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vrnn import SAMPLE_RATE, analyze, generate, load_audio, load_checkpoint
from vrnn.data import Corpus

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("log_px", "kl", "delta", "z_mean", "elbo")


def max_abs_diffs(a, b) -> dict[str, float]:
    """Largest |a - b| of each field of two `Analysis` results (fields a model lacks are left out)."""
    return {k: float(np.max(np.abs(np.asarray(getattr(a, k)) - np.asarray(getattr(b, k)))))
            for k in FIELDS if getattr(b, k) is not None}


def clips(corpus: str | None, seconds: float) -> dict[str, np.ndarray]:
    if corpus:
        wave = np.asarray(Corpus.open(corpus).audio("test")[:int(seconds * SAMPLE_RATE)], dtype=np.float32)
        return {f"test split, {seconds:g} s": wave / 32768.0 if np.abs(wave).max() > 2 else wave}  # int16 samples
    return {p.stem: load_audio(p)[0] for p in sorted((ROOT / "assets" / "examples").glob("*.wav"))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=None, help="a corpus folder: use its test split instead of the example clips")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of the test split (with --corpus)")
    args = p.parse_args()
    waves = clips(args.corpus, args.seconds)
    worst = {"float32": 0.0, "float64": 0.0}
    for path in sorted((ROOT / "assets" / "checkpoints").glob("*.safetensors")):
        for dtype in worst:
            model = load_checkpoint(path)
            model = model.double() if dtype == "float64" else model
            for name, wave in waves.items():
                d = max_abs_diffs(analyze(model, wave), analyze(model, wave, fast=False))
                worst[dtype] = max(worst[dtype], *d.values())
                print(f"{path.stem:13s} {dtype} {name:40s} " + "  ".join(f"{k} {v:.1e}" for k, v in d.items()))
            audio = np.abs(generate(model, 5.0, seed=1) - generate(model, 5.0, seed=1, fast=False)).max()
            print(f"{path.stem:13s} {dtype} generate 5 s, seed 1: max |fast - readable| = {audio:.1e}")
    print("largest difference of any analysis quantity: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
          + ("  (float64 within 1e-9: yes)" if worst["float64"] <= 1e-9 else "  (float64 within 1e-9: NO)"))


if __name__ == "__main__":
    main()

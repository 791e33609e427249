"""Fit the fixed latent projection of each checkpoint on its training windows and store it beside the file.

    python scripts/projections.py --corpus data/allison assets/checkpoints/*.safetensors

For every checkpoint with latent variables: the posterior means mu_z,t of every non-overlapping 0.5 s window of
the corpus's train split (`vrnn.data.split_chunks`: all of them, in file order, each run from a zero state as
in training; no sampling, no seed), their 3 principal axes (`vrnn.latent.fit_pca`), written to
`<checkpoint>.projection.json` with the checkpoint's SHA-256 and the corpus fingerprint. The app draws every
clip's latent trajectory in these axes ("fixed projection"); it ignores a file whose SHA-256 does not match
the checkpoint beside it and then fits on the example clips instead. RNN checkpoints are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vrnn import load_checkpoint  # noqa: E402
from vrnn.data import Corpus, split_chunks  # noqa: E402
from vrnn.latent import fit_checkpoint_projection  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help=".safetensors checkpoints")
    ap.add_argument("--corpus", default="data/allison", help="the corpus the checkpoints were trained on")
    ap.add_argument("--split", default="train", help="which split's windows to fit on")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    corpus = Corpus.open(args.corpus)
    windows = split_chunks(corpus, args.split)  # float32 [S, 8000]
    fp = corpus.meta.get("fingerprint", "")
    source = (f"the {len(windows)} non-overlapping 0.5 s windows of the {args.split} split of "
              f"{corpus.meta['source']['name'] if 'source' in corpus.meta else Path(args.corpus).name}")
    for path in map(Path, args.checkpoints):
        model = load_checkpoint(path)
        if not model.config.has_latent:
            print(f"{path.name}: {model.config.family} has no latent variable, skipped")
            continue
        t0 = time.perf_counter()
        p = fit_checkpoint_projection(model, windows, source)
        out = path.with_suffix(".projection.json")
        p.save(out, checkpoint=path.name, checkpoint_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
               corpus_fingerprint=fp, split=args.split, n_windows=len(windows))
        print(f"{path.name}: explained variance {', '.join(f'{e:.1%}' for e in p.explained)} "
              f"({time.perf_counter() - t0:.1f} s) -> {out}")


if __name__ == "__main__":
    main()

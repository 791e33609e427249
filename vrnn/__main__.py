"""Command line: python -m vrnn {corpus,train,evaluate,analyze,generate}."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_corpus(args: argparse.Namespace) -> int:
    from .data import Corpus, build_corpus

    root = build_corpus(args.out, args.source, progress=not args.quiet)
    c = Corpus.open(root)
    s = c.meta["splits"]
    print(f"Corpus {root}: {c.meta['n_files']} files from {c.meta['source']['name']}; "
          + ", ".join(f"{k} {v['files']} files / {v['seconds'] / 60:.1f} min" for k, v in s.items())
          + f"; normalisation mean {c.normalization[0]:.3g}, std {c.normalization[1]:.3g}.")
    if c.meta["skipped"]:
        print(f"Skipped {len(c.meta['skipped'])} unreadable files, e.g. {c.meta['skipped'][0]}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import TrainConfig, preset
    from .train import train

    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      snapshot_every=args.snapshot_every, num_workers=args.workers)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    summary = train(args.data, args.out, preset(args.preset, args.family), cfg, resume=args.resume,
                    device=args.device, progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .config import FAMILIES, PRESETS

    p = argparse.ArgumentParser(prog="python -m vrnn", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    c = sub.add_parser("corpus", help="build a corpus folder (16 kHz wav, int16 splits, manifest)", formatter_class=fmt)
    c.add_argument("--from", dest="source", default=None,
                   help="folder tree of audio files; default: Debian's asterisk-core-sounds-en-g722 (CC-BY-SA-3.0)")
    c.add_argument("--out", required=True, help="corpus folder to write")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_corpus)

    t = sub.add_parser("train", help="train a model on a corpus", formatter_class=fmt)
    t.add_argument("--data", required=True, help="corpus folder from 'python -m vrnn corpus'")
    t.add_argument("--preset", choices=PRESETS, default="cpu", help="model size")
    t.add_argument("--family", choices=FAMILIES, default="vrnn-gauss", help="model family (Table 1 row)")
    t.add_argument("--out", required=True, help="run folder (best/last checkpoints, metrics.jsonl)")
    t.add_argument("--steps", type=int, default=2000, help="optimiser updates in total")
    t.add_argument("--batch-size", type=int, default=64, help="0.5 s windows per update (global)")
    t.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate")
    t.add_argument("--seed", type=int, default=0, help="seed for weights, windows and noise")
    t.add_argument("--snapshot-every", type=int, default=500, help="keep a snapshot every N steps (0: none)")
    t.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    t.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    t.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.safetensors")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

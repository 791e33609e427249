"""Command line: python -m vrnn {corpus,train,evaluate,analyze,generate}."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _cmd_corpus(args: argparse.Namespace) -> int:
    from .data import Corpus, build_corpus

    root = build_corpus(args.out, args.source, progress=not args.quiet, layout=args.layout, force=args.force)
    c = Corpus.open(root)
    s = c.meta["splits"]
    print(f"Corpus {root}: {c.meta['n_files']} files from {c.meta['source']['name']}; "
          + ", ".join(f"{k} {v['files']} files / {v['seconds'] / 60:.1f} min" for k, v in s.items())
          + f"; normalisation mean {c.normalization[0]:.3g}, std {c.normalization[1]:.3g}.")
    if c.meta["skipped"]:
        print(f"Skipped {len(c.meta['skipped'])} unreadable files, e.g. {c.meta['skipped'][0]}")
    renamed = c.meta.get("renamed", [])
    if renamed:
        print(f"{len(renamed)} files would have shared a wav/ copy's name with another, so their copies keep their "
              f"own extension, e.g. {renamed[0]['file']} -> wav/{renamed[0]['wav']} (all are listed in corpus.json). "
              "If two are one recording in two formats, remove one from the source: both are in the corpus.")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .config import TrainConfig, preset
    from .train import train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    summary = train(args.data, args.out, preset(args.preset, args.family), cfg, resume=args.resume,
                    device=args.device, progress=not args.quiet, force=args.force)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis import analyze
    from .audio import load_audio
    from .checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    waveform, sr = load_audio(args.clip)
    t0 = time.perf_counter()
    a = analyze(model, waveform, sr, sample=args.sample, seed=args.seed)
    seconds = time.perf_counter() - t0
    cols = a.table()
    print(f"{Path(args.clip).name}: {len(waveform) / sr:.2f} s, {a.n_frames} frames of "
          f"{1000 * model.config.x_dim / sr:g} ms, "
          f"{model.config.family} ({Path(args.checkpoint).name}), analysed in {seconds:.2f} s")
    print(f"ELBO along the {'sampled' if args.sample else 'posterior-mean'} path: {a.elbo:.1f} nats "
          f"({a.elbo / a.n_frames:.2f} nats/frame)")
    if a.has_latent:
        print(f"KL: mean {a.kl.mean():.3f}, max {a.kl.max():.3f} nats/frame at {a.times[a.kl.argmax()]:.3f} s; "
              f"delta: mean {a.delta.mean():.4g}, max {a.delta.max():.4g} at {a.times[a.delta.argmax()]:.3f} s")
    else:
        print("This is an RNN model: it has no latent variable, so no delta_t or KL_t rows.")
    names = list(cols)
    rows = list(zip(*cols.values(), strict=True))
    if args.csv:
        Path(args.csv).write_text(a.to_csv())
        print(f"Wrote per-frame table to {args.csv}")
    if args.table:
        print("\t".join(names))
        for r in rows:
            print("\t".join(f"{v:.5g}" for v in r))
    if args.html:
        from .plots import figure2

        figure2(a, title=f"{Path(args.clip).name} - {Path(args.checkpoint).name}").write_html(args.html, include_plotlyjs=True)
        print(f"Wrote figure to {args.html}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    import soundfile as sf

    from .analysis import generate
    from .audio import SAMPLE_RATE
    from .checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    t0 = time.perf_counter()
    audio = generate(model, seconds=args.seconds, seed=args.seed, output_noise=args.output == "sample")
    dt = time.perf_counter() - t0
    sf.write(args.out, audio.clip(-1, 1), SAMPLE_RATE, subtype="PCM_16")
    print(f"Wrote {args.seconds:.2f} s of audio to {args.out} in {dt:.2f} s "
          f"(real-time factor {dt / args.seconds:.3f}); peak |x| {abs(audio).max():.3f}.")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .audio import AUDIO_EXTENSIONS, load_audio
    from .checkpoint import load_checkpoint
    from .data import Corpus, list_audio, sequence_chunks, split_chunks
    from .evaluate import score_sequences

    if args.data:
        files = list_audio(Path(args.data))
        chunks = sequence_chunks([load_audio(p)[0] for p in files if p.suffix.lower() in AUDIO_EXTENSIONS])
        source = args.data
    else:
        chunks = split_chunks(Corpus.open(args.corpus), args.split)
        source = f"{args.corpus}:{args.split}"
    rows = []
    for ckpt in args.checkpoints:
        model = load_checkpoint(ckpt)
        t0 = time.perf_counter()
        s = score_sequences(model, chunks, samples=args.samples, batch_size=args.batch_size, seed=args.seed,
                            progress=not args.quiet)
        row = {"checkpoint": str(ckpt), "family": model.config.family, **s.to_dict(), "samples": args.samples,
               "data": source, "seconds": round(time.perf_counter() - t0, 2)}
        rows.append(row)
        print(f"{Path(ckpt).name:32s} {model.config.family:13s} n={s.n_sequences:4d}  "
              f"ELBO {s.elbo_per_sequence:10.1f} nats/seq ({s.elbo_per_frame:8.2f}/frame)  "
              f"log p(x) ~ {s.loglik_per_sequence:10.1f} nats/seq ({s.loglik_per_frame:8.2f}/frame)  "
              f"[{row['seconds']:.1f} s]")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        print(f"Wrote {args.json}")
    return 0


def _option_type(f):
    """argparse type of a TrainConfig field: its Python type, then its range (`config.check_option`), so a
    bad value is refused with the field's own message."""
    from .config import check_option

    base = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]

    def parse(text: str):
        try:
            value = base(text)
            check_option(f, value)
        except ValueError as e:
            message = str(e) if "must be" in str(e) else f"not a valid {base.__name__}: {text!r}"
            raise argparse.ArgumentTypeError(message) from None
        return value

    parse.__name__ = base.__name__  # for argparse's "invalid int value" wording
    return parse


def add_options(parser: argparse.ArgumentParser, config_class) -> None:
    """One flag per field of `config_class` (a dataclass of `config.option` fields): --name-with-dashes (or
    the field's `flag`), its default, help text and range from the field, so each lives in one place."""
    from dataclasses import MISSING, fields

    for f in fields(config_class):
        m = f.metadata
        rng = ""
        if m.get("low") is not None:
            rng = f"; {'>' if m.get('low_open') else '>='} {m['low']:g}"
        flag = m.get("flag") or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        if m.get("choices"):
            parser.add_argument(flag, dest=f.name, choices=m["choices"], default=default, help=m["help"])
            continue
        parser.add_argument(flag, dest=f.name, type=_option_type(f), metavar=flag[2:].replace("-", "_").upper(),
                            default=default, help=m["help"] + rng)


def build_parser() -> argparse.ArgumentParser:
    from .config import FAMILIES, PRESETS, TrainConfig
    from .data import LAYOUTS

    p = argparse.ArgumentParser(prog="python -m vrnn", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    c = sub.add_parser("corpus", help="build a corpus folder (16 kHz wav, int16 splits, manifest)", formatter_class=fmt)
    c.add_argument("--from", dest="source", default=None,
                   help="folder tree of audio files; default: Debian's asterisk-core-sounds-en-g722 (CC-BY-SA-3.0)")
    c.add_argument("--out", required=True,
                   help="corpus folder to write: new, empty, or a corpus built from the same files (then reused); "
                        "never the --from folder, inside it, or around it")
    c.add_argument("--layout", choices=LAYOUTS, default="auto",
                   help="source layout: auto recognises TIMIT, LJSpeech and VCTK trees, else a plain folder")
    c.add_argument("--force", action="store_true",
                   help="replace a corpus in --out that was built from other files (or rebuild the same one); the "
                        "new corpus replaces it only when complete. Never touches a folder that is not a corpus")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_corpus)

    t = sub.add_parser("train", help="train a model on a corpus", formatter_class=fmt)
    t.add_argument("--data", required=True, help="corpus folder from 'python -m vrnn corpus'")
    t.add_argument("--preset", choices=PRESETS, default="cpu", help="model size")
    t.add_argument("--family", choices=FAMILIES, default="vrnn-gauss", help="model family (Table 1 row)")
    t.add_argument("--out", required=True,
                   help="run folder (best/last checkpoints, metrics.jsonl): new or empty, or a run to --resume; "
                        "locked while training")
    add_options(t, TrainConfig)  # --lr, --batch-size, --steps, ...: one flag per TrainConfig field
    t.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    t.add_argument("--resume", action="store_true",
                   help="continue from RUN_DIR/last.safetensors (refused on a corpus other than the run's, "
                        "unless --force)")
    t.add_argument("--force", action="store_true",
                   help="without --resume: start over in a RUN_DIR that holds a run (its files are moved into "
                        "RUN_DIR/replaced-DATE-TIME/, nothing is deleted), or train into a non-empty folder "
                        "holding no run (nothing there is touched); with --resume: continue on another corpus")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="ELBO and importance-sampled log p(x) per 0.5 s sequence (Table 1)",
                       formatter_class=fmt)
    e.add_argument("checkpoints", nargs="+", help=".safetensors checkpoints to score")
    e.add_argument("--corpus", default="data/allison", help="corpus folder whose split is scored")
    e.add_argument("--split", choices=("train", "valid", "test"), default="test", help="corpus split")
    e.add_argument("--data", default=None, help="score every audio file in this folder instead of a corpus split")
    e.add_argument("--samples", type=int, default=40, help="K importance samples for VRNN models (Burda et al. 2016)")
    e.add_argument("--batch-size", type=int, default=64, help="sequences x samples per forward pass")
    e.add_argument("--seed", type=int, default=0, help="seed for the posterior samples (deterministic result)")
    e.add_argument("--json", default=None, help="write one row per checkpoint to this JSON file")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_evaluate)

    a = sub.add_parser("analyze", help="Figure 2 for one clip: summary, per-frame table, figure", formatter_class=fmt)
    a.add_argument("checkpoint", help=".safetensors checkpoint")
    a.add_argument("clip", help="audio file (wav/flac/ogg/mp3, any rate and channels)")
    a.add_argument("--csv", default=None, help="write the per-frame table as CSV: time_s, delta_t, kl_t_nats, log_px_t_nats")
    a.add_argument("--html", default=None, help="write the interactive Figure 2 (plotly) to this HTML file")
    a.add_argument("--table", action="store_true", help="print the per-frame table to stdout")
    a.add_argument("--sample", action="store_true", help="sample z from the posterior instead of following its mean")
    a.add_argument("--seed", type=int, default=0, help="seed when --sample is given")
    a.set_defaults(func=_cmd_analyze)

    g = sub.add_parser("generate", help="sample audio from a model (Figure 3)", formatter_class=fmt)
    g.add_argument("checkpoint", help=".safetensors checkpoint")
    g.add_argument("--seconds", type=float, default=3.0, help="length in seconds")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--output", choices=("sample", "mean"), default="sample",
                   help="each frame x_t: 'sample' draws it from p(x_t | z_t, h_t-1) as the paper does (Figure 3); "
                        "'mean' takes that distribution's mean (no output noise: less hiss, not the paper's samples)")
    g.add_argument("--out", required=True, help="WAV file to write (16 kHz, 16-bit PCM)")
    g.set_defaults(func=_cmd_generate)
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

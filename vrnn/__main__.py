"""Command line: python -m vrnn {corpus,train,evaluate,analyze,generate,align,segment}."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
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
    _corpus_transcripts(c, args)
    return 0


def _corpus_transcripts(c, args: argparse.Namespace) -> None:
    """Transcripts per split, and with --align their forced alignments (vrnn/transcripts.py)."""
    from .transcripts import TranscriptError, store_alignments, store_transcripts

    try:
        counts = store_transcripts(c)
    except TranscriptError as e:
        print(f"No transcripts: {e}", file=sys.stderr)
        return
    print("Transcripts: " + ", ".join(f"{k} {v} files" for k, v in counts.items()))
    for split in (args.align if args.align != [] else list(counts)) if args.align is not None else []:
        n, failed = store_alignments(c, split, progress=not args.quiet)
        print(f"Aligned {n} {split} files to {c.root / f'{split}.alignments.jsonl'}"
              + (f"; {len(failed)} failed, e.g. {failed[0]}" if failed else ""))


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


HTML_WAVEFORM_SECONDS = 600.0  # s: a longer clip's --html figure draws the waveform's per-frame min/max, not every sample


def _cmd_analyze(args: argparse.Namespace) -> int:
    """Streams the clip: decoded, analysed and written block by block (`analyze_blocks`), so memory stays flat
    with the clip's length; only the per-frame delta_t, KL_t and log p(x_t | .) (float32) are kept for the
    summary and the figure."""
    import numpy as np
    from tqdm import tqdm

    from .analysis import Analysis, analyze_blocks
    from .audio import SAMPLE_RATE, frame_times, read_audio_blocks
    from .checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    X = model.config.x_dim  # samples per frame (200 = 12.5 ms for every bundled model)
    _, n_samples, pieces = read_audio_blocks(args.clip)
    keep_wave = args.html is not None and n_samples <= HTML_WAVEFORM_SECONDS * SAMPLE_RATE
    bar = tqdm(total=n_samples // X, desc="analyze", unit="frame", unit_scale=True, disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    csv_tmp = args.csv.with_name(f".{args.csv.name}.partial") if args.csv else None
    csv_file = csv_tmp.open("w") if csv_tmp else None
    cols: dict[str, list[np.ndarray]] = {"delta": [], "kl": [], "log_px": [], "wave": []}
    elbo, n_frames, has_latent = 0.0, 0, False
    t0 = time.perf_counter()
    try:
        for part in analyze_blocks(model, pieces, sample=args.sample, seed=args.seed,
                                   total_frames=n_samples // X, progress=progress):
            has_latent = part.has_latent
            for name in ("delta", "kl", "log_px"):
                if getattr(part, name) is not None:
                    cols[name].append(getattr(part, name).astype(np.float32))
            if keep_wave:
                cols["wave"].append(part.waveform.copy())
            elif args.html:  # [n, 2] per-frame (min, max), drawn at 2 points per frame
                f = part.waveform.reshape(-1, X)
                cols["wave"].append(np.stack([f.min(1), f.max(1)], 1).reshape(-1))
            if csv_file:
                csv_file.write(part.to_csv(header=n_frames == 0))
            if args.table:
                print(("\t".join(part.table()) + "\n" if n_frames == 0 else "")
                      + "\n".join("\t".join(f"{v:.5g}" for v in r) for r in zip(*part.table().values(), strict=True)))
            elbo += part.elbo
            n_frames += part.n_frames
    except BaseException:
        if csv_file:  # no half-written table is left behind
            csv_file.close()
            csv_tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    if csv_file:
        csv_file.close()
        os.replace(csv_tmp, args.csv)
    a = {name: np.concatenate(v) if v else None for name, v in cols.items()}
    times = frame_times(n_frames, X)
    print(f"{Path(args.clip).name}: {n_frames * X / SAMPLE_RATE:.2f} s, {n_frames} frames of "
          f"{1000 * X / SAMPLE_RATE:g} ms, "
          f"{model.config.family} ({Path(args.checkpoint).name}), analysed in {seconds:.2f} s")
    print(f"ELBO along the {'sampled' if args.sample else 'posterior-mean'} path: {elbo:.1f} nats "
          f"({elbo / n_frames:.2f} nats/frame)")
    if has_latent:
        kl, delta = a["kl"], a["delta"]
        print(f"KL: mean {kl.mean(dtype=np.float64):.3f}, max {kl.max():.3f} nats/frame at {times[kl.argmax()]:.3f} s; "
              f"delta: mean {delta.mean(dtype=np.float64):.4g}, max {delta.max():.4g} at {times[delta.argmax()]:.3f} s")
    else:
        print("This is an RNN model: it has no latent variable, so no delta_t or KL_t rows.")
    if args.csv:
        print(f"Wrote per-frame table to {args.csv}")
    if args.html:
        from .plots import figure2

        rate = SAMPLE_RATE if keep_wave else 2 * SAMPLE_RATE / X  # the envelope: 2 values per frame
        if not keep_wave:
            print(f"The clip is longer than {HTML_WAVEFORM_SECONDS / 60:.0f} min: the figure's waveform row shows "
                  f"each {1000 * X / SAMPLE_RATE:g} ms frame's minimum and maximum.")
        fig_data = Analysis(times=times, delta=a["delta"], kl=a["kl"], log_px=a["log_px"], z_mean=None, z_std=None,
                            prior_mean=None, prior_std=None, kl_per_dim=None, elbo=elbo, waveform=a["wave"],
                            sample_rate=rate, sampled=args.sample)
        figure2(fig_data, title=f"{Path(args.clip).name} - {Path(args.checkpoint).name}").write_html(
            args.html, include_plotlyjs=True)
        print(f"Wrote figure to {args.html}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    import soundfile as sf

    from .analysis import generate
    from .audio import SAMPLE_RATE
    from .checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint)  # --out and --seconds were checked by the parser, before this
    t0 = time.perf_counter()
    audio = generate(model, seconds=args.seconds, seed=args.seed, output_noise=args.output == "sample")
    dt = time.perf_counter() - t0
    sf.write(args.out, audio.clip(-1, 1), SAMPLE_RATE, subtype="PCM_16")
    print(f"Wrote {args.seconds:.2f} s of audio to {args.out} in {dt:.2f} s "
          f"(real-time factor {dt / args.seconds:.3f}); peak |x| {abs(audio).max():.3f}.")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .audio import AUDIO_EXTENSIONS, SAMPLE_RATE, WINDOW_SIZE, load_audio
    from .checkpoint import load_checkpoint
    from .data import Corpus, list_audio, sequence_chunks, split_chunks
    from .evaluate import score_sequences

    if args.data:
        files = [p for p in list_audio(args.data) if p.suffix.lower() in AUDIO_EXTENSIONS - {".g722"}]
        if not files:
            raise ValueError(f"--data {args.data}: no audio files in this folder or its subfolders (looked for "
                             f"{', '.join(sorted(AUDIO_EXTENSIONS - {'.g722'}))}).")
        waves = [load_audio(p)[0] for p in files]
        chunks = sequence_chunks(waves)
        if len(chunks) == 0:
            raise ValueError(f"--data {args.data}: its {len(files)} audio file(s) are all shorter than one "
                             f"{WINDOW_SIZE / SAMPLE_RATE:g} s sequence (the longest is "
                             f"{max(len(w) for w in waves) / SAMPLE_RATE:.2f} s), so there is nothing to score.")
        source = str(args.data)
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


def _cmd_align(args: argparse.Namespace) -> int:
    from .align import align
    from .audio import load_audio
    from .segments import write_textgrid

    waveform, sr = load_audio(args.audio)
    t0 = time.perf_counter()
    ref = align(waveform, sr, args.text)
    dt = time.perf_counter() - t0
    write_textgrid(ref, args.out)
    speech = ref.speech_phones()
    print(f"Aligned {len(ref.words)} words, {len(speech)} phones to {Path(args.audio).name} "
          f"({ref.duration:.2f} s; speech {speech[0].start:.2f}-{speech[-1].end:.2f} s) in {dt:.2f} s; wrote {args.out}")
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    from .data import Corpus
    from .segmentation import collect, evaluate_clips, format_table, picking_rule

    rule = picking_rule(top_n=args.top_n, min_distance=args.min_distance, prominence=args.prominence)
    t0 = time.perf_counter()
    clips = collect(args.checkpoints, Corpus.open(args.corpus), args.split, progress=not args.quiet)
    rows = evaluate_clips(clips, args.tolerance, rule)
    n_ref = sum(len(c.ref.boundaries()) for c in clips)
    print(f"{args.corpus}:{args.split}: {len(clips)} clips with a reference, {n_ref} phone boundaries "
          f"({sum(len(c.ref.boundaries(True)) for c in clips)} phone-to-phone); tolerance {args.tolerance * 1000:g} ms, "
          f"one-to-one; {time.perf_counter() - t0:.1f} s")
    for r in {r["signal"]: r for r in rows}.values():
        print(f"  {r['signal']:8s} {r['picking']}")
    print(format_table(rows))
    skipped = [c for c in args.checkpoints if not any(r["source"] == Path(c).stem for r in rows)]
    if skipped:
        print(f"No latent signal (RNN models): {', '.join(Path(c).name for c in skipped)}")
    if args.json:
        meta = {"corpus": str(args.corpus), "split": args.split, "tolerance": args.tolerance,
                "clips": [c.file for c in clips], "rows": rows}
        Path(args.json).write_text(json.dumps(meta, indent=1))
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
    from .cli_types import (
        MAX_GENERATE_SECONDS,
        device,
        existing_file,
        existing_folder,
        float_range,
        nonnegative_int,
        output_file,
        positive_int,
        seconds,
        seed,
    )
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
    c.add_argument("--align", nargs="*", choices=("train", "valid", "test"), default=None, metavar="SPLIT",
                   help="force-align the transcripts of these splits (no SPLIT: all) with PocketSphinx, "
                        "for 'python -m vrnn segment'")
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
    t.add_argument("--threads", type=nonnegative_int, default=0, help="CPU threads for torch (0: torch's default)")
    t.add_argument("--device", type=device, default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
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
    e.add_argument("checkpoints", nargs="+", type=existing_file, help=".safetensors checkpoints to score")
    e.add_argument("--corpus", default="data/allison", help="corpus folder whose split is scored")
    e.add_argument("--split", choices=("train", "valid", "test"), default="test", help="corpus split")
    e.add_argument("--data", type=existing_folder, default=None,
                   help="score every audio file in this folder (and below) instead of a corpus split")
    e.add_argument("--samples", type=positive_int, default=40,
                   help="K importance samples for VRNN models (Burda et al. 2016), >= 1")
    e.add_argument("--batch-size", type=positive_int, default=64, help="sequences x samples per forward pass, >= 1")
    e.add_argument("--seed", type=seed, default=0, help="seed for the posterior samples (deterministic result)")
    e.add_argument("--json", type=output_file(".json"), default=None, help="write one row per checkpoint to this JSON file")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_evaluate)

    a = sub.add_parser("analyze", help="Figure 2 for one clip: summary, per-frame table, figure", formatter_class=fmt)
    a.add_argument("checkpoint", type=existing_file, help=".safetensors checkpoint")
    a.add_argument("clip", type=existing_file,
                   help="audio file (wav/flac/ogg/mp3, any rate and channels, any length: read in blocks)")
    a.add_argument("--csv", type=output_file(".csv"), default=None,
                   help="write the per-frame table as CSV: time_s, delta_t, kl_t_nats, log_px_t_nats")
    a.add_argument("--html", type=output_file(".html", ".htm"), default=None,
                   help="write the interactive Figure 2 (plotly) to this HTML file")
    a.add_argument("--table", action="store_true", help="print the per-frame table to stdout")
    a.add_argument("--sample", action="store_true", help="sample z from the posterior instead of following its mean")
    a.add_argument("--seed", type=seed, default=0, help="seed when --sample is given")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=_cmd_analyze)

    g = sub.add_parser("generate", help="sample audio from a model (Figure 3)", formatter_class=fmt)
    g.add_argument("checkpoint", type=existing_file, help=".safetensors checkpoint")
    g.add_argument("--seconds", type=seconds(MAX_GENERATE_SECONDS), default=3.0,
                   help=f"length in seconds, > 0 and <= {MAX_GENERATE_SECONDS:g}")
    g.add_argument("--seed", type=seed, default=0, help="random seed")
    g.add_argument("--output", choices=("sample", "mean"), default="sample",
                   help="each frame x_t: 'sample' draws it from p(x_t | z_t, h_t-1) as the paper does (Figure 3); "
                        "'mean' takes that distribution's mean (no output noise: less hiss, not the paper's samples)")
    g.add_argument("--out", type=output_file(".wav", ".flac"), required=True,
                   help="audio file to write (16 kHz, 16-bit PCM): .wav or .flac")
    g.set_defaults(func=_cmd_generate)

    al = sub.add_parser("align", help="force-align a typed transcript to a clip (PocketSphinx) -> TextGrid",
                        formatter_class=fmt)
    al.add_argument("audio", type=existing_file, help="audio file (any format, rate and channels)")
    al.add_argument("--text", required=True, help="what is said (digits and # * are read as words)")
    al.add_argument("--out", type=output_file(".TextGrid"), required=True,
                    help="TextGrid file to write (tiers: words, phones)")
    al.set_defaults(func=_cmd_align)

    sg = sub.add_parser("segment", help="do the latents find the phones? boundary scores vs baselines",
                        formatter_class=fmt)
    sg.add_argument("checkpoints", nargs="+", type=existing_file,
                    help=".safetensors checkpoints whose latent signals are scored")
    sg.add_argument("--corpus", default="data/allison", help="corpus with alignments ('corpus --align') or TIMIT phones")
    sg.add_argument("--split", choices=("train", "valid", "test"), default="valid", help="corpus split")
    sg.add_argument("--tolerance", type=seconds(1.0), default=0.02,
                    help="hit window in seconds (one-to-one matching), > 0 and <= 1")
    sg.add_argument("--top-n", action="store_true",
                    help="keep the N most prominent peaks per clip, N = the reference's boundary count")
    sg.add_argument("--min-distance", type=seconds(10.0), default=None,
                    help="seconds between peaks, for every signal, > 0 and <= 10 (default: each signal's value tuned "
                         "on valid)")
    sg.add_argument("--prominence", type=float_range(0, 1), default=None,
                    help="least peak prominence, x the clip's signal range, for every signal, 0 to 1 (default: tuned)")
    sg.add_argument("--json", type=output_file(".json"), default=None,
                    help="write the table, the settings and per-clip scores to this JSON file")
    sg.add_argument("--quiet", action="store_true", help="no progress bar")
    sg.set_defaults(func=_cmd_segment)
    return p


def main(argv: list[str] | None = None) -> int:
    from .audio import AudioWarning

    args = build_parser().parse_args(argv)
    show = warnings.showwarning

    def show_audio_warning(message, category, *rest, **kw):  # a WAV cut short, for example: one line on stderr
        if issubclass(category, AudioWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            show(message, category, *rest, **kw)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", AudioWarning)  # every file's, not only the first
            warnings.showwarning = show_audio_warning
            return args.func(args)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

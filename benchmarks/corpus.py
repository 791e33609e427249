"""Corpus build throughput and peak memory: `python benchmarks/corpus.py [--hours 2]`.

Synthesises a source tree of speech-like audio in a temporary folder (long 44.1 kHz stereo WAV files
and one-minute 22.05 kHz FLAC files, repeated through symbolic links until it holds `--hours` of
audio), then times `python -m vrnn corpus --from SRC --out OUT` in a child process and reads that
process's own peak resident memory (getrusage). A smaller build first (a quarter of the files) shows
that peak memory does not grow with the corpus. Everything is deleted afterwards.

Prints minutes of audio built per second of wall time, peak RSS, and the RSS of a process that only
imports the builder (the floor: Python, numpy, torch).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def speechlike_file(path: Path, seconds: float, rate: int, channels: int, seed: int, block_s: float = 10.0) -> None:
    """Write a voiced-like signal (harmonics of a gliding f0, syllable-rate envelope, noise) in blocks."""
    rng = np.random.default_rng(seed)
    f0 = 110.0 + 40.0 * rng.random()
    phase = 0.0
    with sf.SoundFile(path, "w", rate, channels, "PCM_16" if path.suffix == ".wav" else None) as f:
        done = 0
        total = int(seconds * rate)
        while done < total:
            n = min(int(block_s * rate), total - done)
            t = (done + np.arange(n)) / rate
            inst = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
            ph = phase + 2 * np.pi * np.cumsum(inst) / rate
            phase = float(ph[-1])
            x = sum(np.sin(k * ph) / k for k in range(1, 8)) * np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
            x = 0.15 * x + 0.02 * rng.standard_normal(n)
            f.write(np.repeat(x[:, None], channels, 1).astype(np.float32))
            done += n


def make_source(src: Path, hours: float) -> tuple[int, float]:
    """Half the hours as 10-minute 44.1 kHz stereo WAVs, half as 1-minute 22.05 kHz FLACs (links to a
    few distinct files). Returns (files, seconds)."""
    store = src.parent / "store"
    store.mkdir()
    long_wav, short = store / "long.wav", [store / f"short{i}.flac" for i in range(4)]
    speechlike_file(long_wav, 600.0, 44_100, 2, seed=0)
    for i, p in enumerate(short):
        speechlike_file(p, 60.0, 22_050, 1, seed=1 + i)
    n_long = max(1, round(hours * 60 / 2 / 10))
    n_short = max(1, round(hours * 60 / 2))
    for i in range(n_long):
        d = src / f"book{i:02d}"
        d.mkdir(parents=True)
        (d / "chapter.wav").symlink_to(long_wav)
    for i in range(n_short):
        d = src / f"speaker{i % 10:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"utt{i:04d}.flac").symlink_to(short[i % len(short)])
    return n_long + n_short, 600.0 * n_long + 60.0 * n_short


# Runs `python -m vrnn ARGS` (or only the import when ARGS is empty) and prints its own peak RSS.
CHILD = ("import resource, sys; import vrnn.data; from vrnn.__main__ import main; rc = main(sys.argv[1:]) if sys.argv[1:] else 0; "
         "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")


def run_child(*args: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=ROOT, check=True, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    dt = time.perf_counter() - t0
    kib = next(int(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("peak_rss_kib"))
    return dt, kib / 1024


def build(src: Path, out: Path) -> tuple[float, float]:
    return run_child("corpus", "--from", str(src), "--out", str(out), "--quiet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--hours", type=float, default=2.0, help="hours of audio in the synthetic source")
    ap.add_argument("--tmp", default=None, help="folder for the temporary tree (default: the system's temp folder)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="vrnn-corpus-bench-", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        n_files, seconds = make_source(tmp / "src", args.hours)
        print(f"source: {n_files} files, {seconds / 3600:.2f} h (synthesised in {time.perf_counter() - t0:.0f} s)")

        _, floor = run_child()

        quarter = tmp / "quarter"
        for d in sorted((tmp / "src").iterdir())[:: 4]:
            shutil.copytree(d, quarter / d.name, symlinks=True)
        q_seconds = sum(sf.info(str(p)).duration for p in quarter.rglob("*.*"))
        dt_q, rss_q = build(quarter, tmp / "out_quarter")
        dt, rss = build(tmp / "src", tmp / "out")
        size = sum(p.stat().st_size for p in (tmp / "out").rglob("*") if p.is_file())
        print(f"{q_seconds / 3600:.2f} h: {dt_q:.1f} s, {q_seconds / 60 / dt_q:.1f} min of audio per s, "
              f"peak RSS {rss_q:.0f} MB")
        print(f"{seconds / 3600:.2f} h: {dt:.1f} s, {seconds / 60 / dt:.1f} min of audio per s, "
              f"peak RSS {rss:.0f} MB (of which {floor:.0f} MB is Python + numpy + torch after "
              f"'import vrnn.data'); corpus on disk {size / 2**20:.0f} MB (int16 splits + wav copies)")


if __name__ == "__main__":
    main()

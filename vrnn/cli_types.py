"""argparse types with ranges: a bad value is a usage error (exit 2, the flag named) before any work starts.

    p.add_argument("--batch-size", type=positive_int, ...)
    p.add_argument("--seconds", type=float_range(0, MAX_GENERATE_SECONDS, low_open=True), ...)
    p.add_argument("--out", type=output_file(".wav", ".flac"), ...)
    p.add_argument("--device", type=device, ...)

Each type is a callable str -> value that raises `argparse.ArgumentTypeError` with a sentence; argparse
prefixes it with the program and the flag (`python -m vrnn generate: error: argument --seconds: ...`).
The types only check the value itself (and, for paths, what is on disk now), never load a model.
docs/robustness.md lists which flag has which range.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes 64-bit seeds; numpy's default_rng any int >= 0
MAX_GENERATE_SECONDS = 600.0  # s: 10 minutes, 48,000 steps; its pre-drawn noise and output stay under ~150 MB


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An integer in [low, high] (either bound may be None: unbounded)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_range_words(low, high)}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def float_range(low: float | None = None, high: float | None = None, *, low_open: bool = False,
                high_open: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high] ((low, ...] with low_open, [..., high) with high_open); never NaN
    or infinite."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text.strip()!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {_range_words(low, high, low_open, high_open)}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


def _range_words(low, high, low_open: bool = False, high_open: bool = False) -> str:
    lo = None if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = None if high is None else f"{'<' if high_open else '<='} {high:g}"
    if lo and hi:
        return f"{lo} and {hi}"
    return lo or hi or "a number"


positive_int = int_range(1)  # 1, 2, ...: counts, batch sizes, steps
nonnegative_int = int_range(0)  # 0, 1, ...: "0 = off" counts, worker processes
seed = int_range(0, SEED_MAX)  # random seeds
positive_float = float_range(0, low_open=True)  # > 0, finite: rates, durations


def seconds(maximum: float) -> Callable[[str], float]:
    """A duration in seconds, > 0 and <= maximum, finite."""
    return float_range(0, maximum, low_open=True)


def output_file(*suffixes: str) -> Callable[[str], Path]:
    """A file to write: not an existing folder, its folder exists, and (when `suffixes` are given) it ends
    in one of them (case-insensitive), since the suffix picks the format. Nothing is created here."""
    allowed = tuple(s.lower() for s in suffixes)

    def parse(text: str) -> Path:
        if not text.strip():
            raise argparse.ArgumentTypeError("expected a file name, got an empty string")
        path = Path(text)
        if path.is_dir() or text.endswith(("/", os.sep)):
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name inside it, "
                                             f"e.g. {str(path / ('out' + (allowed[0] if allowed else '')))!r}")
        if allowed and path.suffix.lower() not in allowed:
            raise argparse.ArgumentTypeError(
                f"{text!r} has {'no extension' if not path.suffix else 'the extension ' + repr(path.suffix)}; "
                f"the file's format comes from it, one of {', '.join(allowed)}")
        parent = path.parent
        if not parent.is_dir():
            raise argparse.ArgumentTypeError(f"the folder {str(parent)!r} of {text!r} does not exist"
                                             if not parent.exists() else f"{str(parent)!r} is not a folder")
        return path

    parse.__name__ = "file name"
    return parse


def existing_folder(text: str) -> Path:
    """A folder that exists (its contents are the command's to judge)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"there is no folder {text!r}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return path


def existing_file(text: str) -> Path:
    """A file that exists and is not a folder (its contents are the command's to judge)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"there is no file {text!r}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    return path


def device(text: str) -> str:
    """A torch device that this machine has: cpu, cuda, cuda:N (N < the number of GPUs), mps. Imports
    torch, so only a flag that was given pays for it."""
    import torch

    try:
        dev = torch.device(text.strip())
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this PyTorch was built without CUDA" if torch.version.cuda is None
                   else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
            raise argparse.ArgumentTypeError(f"{text!r}: {why}; use --device cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: Apple's MPS backend is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text!r}: only cpu, cuda and mps devices are supported")
    return str(dev)

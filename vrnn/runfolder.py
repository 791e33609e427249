"""Run folders: what `train` may find in its `--out` folder, and one training per folder at a time.

Rules, checked before any work starts (`claim_run_folder`):

- a new or empty folder: train there.
- a folder holding a run (last.safetensors, best.safetensors, metrics.jsonl or snapshots/):
  a fresh `train` refuses and points at `--resume` (continue it) or `--force` (start over: the old
  run's files are moved into RUN_DIR/replaced-YYYYmmdd-HHMMSS/, nothing is deleted).
- `--resume` on a corpus other than the one the run was trained on (its corpus fingerprint, recorded
  in last.safetensors, differs) refuses unless `--force` (then training continues on the new data).
- a non-empty folder holding no run (your files, a corpus, ...): refused unless `--force` (the run is
  then written beside those files; none of them is moved or deleted).
- a lock file, RUN_DIR/.train.lock (`vrnn.files.FolderLock`), held for the whole run: a second
  training into the same folder exits at once naming the folder and the first one's pid. The kernel
  drops the lock when its process dies, so a killed run's lock never blocks. Under torchrun, rank 0
  alone checks, locks and writes; if it refuses, torchrun stops the other ranks.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .files import FolderBusyError, FolderLock

RUN_FILES = ("last.safetensors", "best.safetensors", "metrics.jsonl", "snapshots")  # what makes a folder a run
LOCK_NAME = ".train.lock"
REPLACED_PREFIX = "replaced-"  # --force moves an old run into RUN_DIR/replaced-YYYYmmdd-HHMMSS/


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked; the message says why and which flag to use."""


def _ours(name: str) -> bool:
    """Entries a run folder may hold besides RUN_FILES without making it "not empty": the lock, a
    checkpoint temporary left by a killed run, and old runs that --force moved aside."""
    return name == LOCK_NAME or name.startswith(REPLACED_PREFIX) or (name.startswith(".") and name.endswith(".tmp"))


def run_files(out: Path) -> list[str]:
    """The RUN_FILES present in `out` (an empty snapshots/ folder does not count)."""
    found = []
    for name in RUN_FILES:
        p = out / name
        if p.is_file() or (p.is_dir() and any(p.iterdir())):
            found.append(name)
    return found


def recorded_fingerprint(checkpoint: Path) -> str | None:
    """The corpus fingerprint a run's checkpoint records (training.data.corpus_fingerprint), read from
    the file's metadata alone; None when the file is unreadable or older than the field."""
    from safetensors import safe_open

    try:
        with safe_open(str(checkpoint), framework="pt", device="cpu") as f:
            training = json.loads((f.metadata() or {}).get("training", "{}"))
        return training["data"]["corpus_fingerprint"]
    except Exception:  # unreadable or damaged: `train` reports it properly when it reads the file
        return None


def corpus_fingerprint(data: Path) -> str | None:
    try:
        return json.loads((Path(data) / "corpus.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a corpus: `train` says so when it opens it


def check_run_folder(out: Path, data: Path, resume: bool, force: bool) -> None:
    """Refuse, with a sentence naming the flag to use, what `train` must not do in `out` (see the
    module docstring). Reads only. Raises RunFolderError."""
    if not out.exists():
        return
    if not out.is_dir():
        raise RunFolderError(f"--out {out} exists and is not a folder; choose a folder for the run.")
    found = run_files(out)
    if not found:
        others = sorted(p.name for p in out.iterdir() if not _ours(p.name))
        if others and not force:
            raise RunFolderError(
                f"--out {out} is not empty and holds no training run ({len(others)} entries, e.g. "
                f"{', '.join(others[:3])}). Choose a new or empty folder, or add --force to write the run "
                "(best/last checkpoints, metrics.jsonl, snapshots/) beside those files; none of them is "
                "moved or deleted.")
        return
    if not resume:
        if force:
            return
        last = out / "last.safetensors"
        step = _recorded_step(last) if last.is_file() else None
        raise RunFolderError(
            f"--out {out} already holds a training run ({', '.join(found)}"
            + (f"; last checkpoint at step {step}" if step is not None else "") + "). Add --resume to continue "
            f"it, or --force to start over (the old files are moved into {out}/{REPLACED_PREFIX}DATE-TIME/, "
            "nothing is deleted), or choose a new --out.")
    last = out / "last.safetensors"
    if last.is_file() and not force:
        was, now = recorded_fingerprint(last), corpus_fingerprint(data)
        if was is not None and now is not None and was != now:
            raise RunFolderError(
                f"--resume: the run in {out} was trained on another corpus (fingerprint {was[:12]}), not "
                f"{data} (fingerprint {now[:12]}). Resume with the --data it was trained on, or add --force to "
                "continue training on this corpus (the model keeps the normalisation of its first corpus).")


def _recorded_step(checkpoint: Path) -> int | None:
    from safetensors import safe_open

    try:
        with safe_open(str(checkpoint), framework="pt", device="cpu") as f:
            return int(json.loads((f.metadata() or {}).get("training", "{}"))["steps"])
    except Exception:
        return None


def set_aside(out: Path) -> Path | None:
    """--force without --resume: move the run files of `out` into a new out/replaced-DATE-TIME/
    folder (renames, nothing is copied or deleted). Returns that folder, or None when there was nothing."""
    found = run_files(out)
    if not found:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = out / f"{REPLACED_PREFIX}{stamp}"
    k = 1
    while dest.exists():
        k += 1
        dest = out / f"{REPLACED_PREFIX}{stamp}-{k}"
    dest.mkdir()
    for name in found:
        os.replace(out / name, dest / name)
    snapshots = out / "snapshots"
    if snapshots.is_dir() and not any(snapshots.iterdir()):
        shutil.rmtree(snapshots)
    return dest


@contextmanager
def claim_run_folder(out: str | os.PathLike, data: str | os.PathLike, resume: bool, force: bool, is_main: bool,
                     log=print) -> Iterator[None]:
    """Check `out` (module docstring), lock it for this process, and with `force` (no `resume`) move an
    old run aside; the lock is held until the `with` block ends. Only the main process (rank 0)
    checks and locks; the others pass through. Raises RunFolderError before anything is written."""
    if not is_main:
        yield
        return
    out, data = Path(out), Path(data)
    check_run_folder(out, data, resume, force)  # read-only, so a refusal leaves the folder as it was
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = FolderLock(out / LOCK_NAME, f"A training run in {out}")
        lock.acquire()
    except FolderBusyError as e:
        raise RunFolderError(str(e)) from None
    try:
        check_run_folder(out, data, resume, force)  # again: another run may have written meanwhile
        if force and not resume:
            moved = set_aside(out)
            if moved is not None:
                log(f"--force: moved the previous run's files into {moved}.")
        yield
    finally:
        lock.release()

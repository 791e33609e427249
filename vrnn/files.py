"""File safety shared by the corpus builder and the trainer: an exclusive lock file that names its
holder, and a check that an output folder does not overlap an input folder.

The lock is `fcntl.flock` on a small file: the kernel releases it when its process exits, however it
exits (SIGKILL included), so a lock left by a killed process never blocks the next one; the file
itself only says who holds it (pid, host, start time), for the message the next process prints.
Where `fcntl` is missing (Windows) the file is created with O_EXCL instead and a leftover one is
taken over when the process it names is no longer running.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class FolderBusyError(RuntimeError):
    """Another process holds the lock; the message names the folder and that process."""


class FolderLock:
    """An exclusive, non-blocking lock on `path` (a file, created if missing, removed on release).

    Args:
        path: the lock file, e.g. RUN_DIR/.train.lock.
        purpose: what the holder is doing, for messages ("a training run in runs/x").

    Use as a context manager or with `acquire()` / `release()`. `acquire` raises FolderBusyError at
    once (it never waits) when another process, or another `FolderLock` in this process, holds it.
    """

    def __init__(self, path: str | os.PathLike, purpose: str):
        self.path = Path(path)
        self.purpose = purpose
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def holder(self) -> dict:
        """What the lock file says about its holder ({} when unreadable or being written)."""
        try:
            info = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def _busy(self) -> FolderBusyError:
        h = self.holder()
        who = (f"process {h.get('pid', '?')} on {h.get('host', '?')} (started {h.get('started', '?')})"
               if h else "another process")
        return FolderBusyError(f"{self.purpose} is already in progress: {who} holds the lock {self.path}. "
                               "Wait for it to finish or stop it, or use another folder. (A lock left by a "
                               "process that was killed is released with it and never blocks.)")

    def acquire(self) -> None:
        if self._fd is not None:
            raise FolderBusyError(f"{self.path} is already held by this lock object.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            self._acquire_exclusive_create()
        else:
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # BlockingIOError: held by someone else
                    os.close(fd)
                    raise self._busy() from None
                # The previous holder removes the file on release: if it did so between our open and
                # our flock, we hold a lock on a file nobody else will open; start again.
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            self._fd = fd
        stamp = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "purpose": self.purpose}
        os.ftruncate(self._fd, 0)
        os.write(self._fd, json.dumps(stamp).encode())

    def _acquire_exclusive_create(self) -> None:
        for _ in range(2):
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                return
            except FileExistsError:
                h = self.holder()
                if h.get("host") == socket.gethostname() and not _pid_alive(int(h.get("pid", -1))):
                    self.path.unlink(missing_ok=True)  # left by a process that no longer runs
                    continue
                raise self._busy() from None
        raise self._busy()

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it (see `acquire`)
        finally:
            os.close(self._fd)
            self._fd = None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def overlap(a: str | os.PathLike, b: str | os.PathLike) -> str | None:
    """How folder `b` overlaps folder `a` after resolving symlinks and `..`: "same", "inside" (b is
    inside a), "contains" (b contains a), or None when they are apart. Neither needs to exist."""
    ra, rb = Path(a).resolve(), Path(b).resolve()
    if ra == rb:
        return "same"
    if ra in rb.parents:
        return "inside"
    if rb in ra.parents:
        return "contains"
    return None

"""What every corpus layout shares: the splits, the error, one source file as a layout sees it, and the
deterministic split by SHA-1."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)


class CorpusError(RuntimeError):
    """The corpus cannot be built or read; the message says why and what to do."""


@dataclass
class SourceFile:
    """One audio file of a source tree, as a layout reader sees it.

    name: its path relative to the source root (the manifest's "file").
    split: fixed by the layout (TIMIT), or "" to be drawn by `assign_splits` over `group`.
    group: files of one group share a split (a VCTK speaker); "" means the file is its own group.
    info: extra manifest fields ("speaker", "text").
    """

    path: Path
    name: str
    split: str = ""
    group: str = ""
    info: dict = field(default_factory=dict)



def sha1_order(keys) -> list[str]:
    return sorted(keys, key=lambda k: hashlib.sha1(k.encode()).hexdigest())


def assign_splits(names: list[str]) -> dict[str, str]:
    """Deterministic split by key (a file's relative path, or a speaker): order keys by SHA-1, then
    the first 90% are train, the next 5% valid, the rest test (at least one valid and one test key
    when there are three or more)."""
    order = sha1_order(names)
    n = len(order)
    n_valid = max(1, round(SPLIT_FRACTIONS[1] * n)) if n >= 3 else 0
    n_test = max(1, round(SPLIT_FRACTIONS[2] * n)) if n >= 3 else 0
    n_train = n - n_valid - n_test
    split = {}
    for i, name in enumerate(order):
        split[name] = "train" if i < n_train else ("valid" if i < n_train + n_valid else "test")
    return split



def resolve_splits(files: list[SourceFile]) -> None:
    """Draw the split of every file whose layout left it open (`assign_splits` over its group, or itself)."""
    free = [f for f in files if not f.split]
    drawn = assign_splits(sorted({f.group or f.name for f in free}))
    for f in free:
        f.split = drawn[f.group or f.name]


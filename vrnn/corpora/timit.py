"""TIMIT: {TRAIN,TEST}/DR1..DR8/SPEAKER/*.WAV (NIST SPHERE or RIFF) with .PHN phone boundaries and .TXT
text; its own TRAIN/TEST split, with 5% of the TRAIN speakers held out as valid."""

from __future__ import annotations

import re
from pathlib import Path

from .base import SourceFile, sha1_order

PATTERN = re.compile(r"(?:^|/)(train|test)/(dr[1-8])/([^/]+)/[^/]+$", re.IGNORECASE)  # where TIMIT puts its audio
VALID_FRACTION = 0.05  # of the TRAIN speakers, held out as the valid split


def utterance_base(path: Path) -> Path:
    """`.../SA1.WAV` and `.../SA1.WAV.wav` (a RIFF copy beside the SPHERE original) -> `.../SA1`."""
    return path.parent / path.name.split(".", 1)[0]


def sibling(path: Path, suffix: str) -> Path | None:
    """The file beside `path` with the same utterance name and `suffix` (upper or lower case)."""
    base = utterance_base(path)
    for s in (suffix, suffix.lower()):
        for cand in (path.with_suffix(s), base.with_name(base.name + s)):
            if cand.is_file():
                return cand
    return None



def scan(files: list[SourceFile]) -> list[SourceFile]:
    """TIMIT: keep {TRAIN,TEST}/DRn/SPEAKER/UTT files, one per utterance (the SPHERE original when a
    RIFF copy `UTT.WAV.wav` sits beside it); the TEST folder is the test split; 5% of the TRAIN
    speakers (by SHA-1 of their id, whole speakers) are the valid split."""
    chosen: dict[str, SourceFile] = {}
    for f in files:
        m = PATTERN.search(f.name)
        if not m:
            continue
        key = utterance_base(Path(f.name)).as_posix().lower()
        if key in chosen and len(chosen[key].name) <= len(f.name):
            continue
        speaker = m.group(3).upper()
        f.split = "train" if m.group(1).lower() == "train" else "test"
        f.group = speaker
        f.info = {"speaker": speaker}
        txt = sibling(f.path, ".TXT")
        if txt is not None:
            words = txt.read_text(errors="replace").split()
            f.info["text"] = " ".join(words[2:])  # "start end words..."
        chosen[key] = f
    train_speakers = sorted({f.group for f in chosen.values() if f.split == "train"})
    n_valid = max(1, round(VALID_FRACTION * len(train_speakers))) if len(train_speakers) >= 2 else 0
    valid = set(sha1_order(train_speakers)[:n_valid])
    for f in chosen.values():
        if f.split == "train" and f.group in valid:
            f.split = "valid"
    return sorted(chosen.values(), key=lambda f: f.name)


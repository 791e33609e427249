"""VCTK: wav48*/pNNN/*.wav|flac (and txt/pNNN/*.txt); split by speaker (90/5/5 of the speakers, so valid
and test voices are never trained on); mic1 only where both microphones exist."""

from __future__ import annotations

import re
from pathlib import Path

from .base import SourceFile

PATTERN = re.compile(r"(?:^|/)(wav48[^/]*)/([ps]\d+)/[^/]+$", re.IGNORECASE)  # where VCTK puts its audio


def scan(root: Path, files: list[SourceFile]) -> list[SourceFile]:
    """VCTK: wav48*/SPEAKER/*; split by speaker; keep mic1 where a mic1/mic2 pair exists (VCTK 0.92:
    mic1 is the microphone of the earlier releases); text from txt/SPEAKER/UTT.txt when present."""
    mic1 = {f.name.rsplit("_mic1", 1)[0] for f in files if f.path.stem.endswith("_mic1")}
    out = []
    for f in files:
        m = PATTERN.search(f.name)
        if not m:
            continue
        stem = f.path.stem
        if stem.endswith("_mic2") and f.name.rsplit("_mic2", 1)[0] in mic1:
            continue
        speaker = m.group(2)
        f.group, f.info = speaker, {"speaker": speaker}
        vctk_root = root / f.name[: m.start(1)] if m.start(1) else root
        utt = stem.removesuffix("_mic1").removesuffix("_mic2")
        txt = vctk_root / "txt" / speaker / f"{utt}.txt"
        if txt.is_file():
            f.info["text"] = txt.read_text(errors="replace").strip()
        out.append(f)
    return out


"""LJSpeech: wavs/*.wav and metadata.csv (id|text|normalised text); one speaker, split by file."""

from __future__ import annotations

from pathlib import Path

from .base import SourceFile


def find_root(root: Path) -> Path | None:
    """The folder holding metadata.csv beside wavs/: `root` or one folder down; None when there is none."""
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (d / "metadata.csv").is_file() and (d / "wavs").is_dir():
            return d
    return None



def scan(root: Path, files: list[SourceFile]) -> list[SourceFile]:
    """LJSpeech: wavs/*.wav with their normalised transcription from metadata.csv (id|text|normalised);
    one speaker, so split by file."""
    lj = find_root(root)
    texts = {}
    for line in (lj / "metadata.csv").read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("|")
        if len(parts) >= 2:
            texts[parts[0]] = parts[2] if len(parts) >= 3 and parts[2] else parts[1]
    wavs = (lj / "wavs").relative_to(root).as_posix()
    prefix = "" if wavs == "." else wavs + "/"
    out = []
    for f in files:
        if not f.name.startswith(prefix):
            continue
        f.info = {"speaker": "LJ"}
        if f.path.stem in texts:
            f.info["text"] = texts[f.path.stem]
        out.append(f)
    return out


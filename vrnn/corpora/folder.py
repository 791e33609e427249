"""The plain folder layout: any tree of audio files (`AUDIO_EXTENSIONS`), split by file (SHA-1 of the
relative path, 90/5/5). Every other layout starts from this listing."""

from __future__ import annotations

from pathlib import Path

from ..audio import AUDIO_EXTENSIONS


def list_audio(root: Path, exclude_dirs: tuple[str, ...] = ()) -> list[Path]:
    """All audio files under `root` (recursive), sorted by relative path."""
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
             and not any(part in exclude_dirs for part in p.relative_to(root).parts[:-1])]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


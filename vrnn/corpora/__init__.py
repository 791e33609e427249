"""Corpus layouts: how `vrnn.data.build_corpus` reads a source tree, one small module per layout.

    folder    any tree of wav/flac/ogg/mp3/... files; split by file (SHA-1 of the relative path, 90/5/5)
    timit     TIMIT: {TRAIN,TEST}/DR1..DR8/SPEAKER/*.WAV; its own TRAIN/TEST split, 5% of TRAIN speakers valid
    ljspeech  LJSpeech: wavs/*.wav and metadata.csv; split by file
    vctk      VCTK: wav48*/pNNN/*.wav|flac; split by speaker
    asterisk  the default source (Debian's asterisk-core-sounds-en-g722), read as a plain folder

Each layout module turns the plain listing (`folder.list_audio`) into `SourceFile`s with their fixed
splits, split groups and manifest fields (speaker, text).
"""

from __future__ import annotations

from pathlib import Path

from . import ljspeech, timit, vctk
from .base import SPLIT_FRACTIONS, SPLITS, CorpusError, SourceFile, assign_splits, resolve_splits, sha1_order
from .folder import list_audio

LAYOUTS = ("auto", "folder", "timit", "ljspeech", "vctk")

__all__ = ["LAYOUTS", "SPLITS", "SPLIT_FRACTIONS", "CorpusError", "SourceFile", "assign_splits", "detect_layout",
           "list_audio", "resolve_splits", "scan_source", "sha1_order"]


def detect_layout(root: Path, names: list[str]) -> str:
    """Which layout a source tree has: "ljspeech" (metadata.csv beside wavs/, at the root or one
    folder down), "timit" or "vctk" (most audio files sit where that corpus puts them), else "folder"."""
    if ljspeech.find_root(root) is not None:
        return "ljspeech"
    for layout, pattern in (("timit", timit.PATTERN), ("vctk", vctk.PATTERN)):
        if names and sum(bool(pattern.search(n)) for n in names) * 2 >= len(names):
            return layout
    return "folder"


def scan_source(root: Path, layout: str = "auto", exclude_dirs: tuple[str, ...] = ()) -> tuple[str, list[SourceFile]]:
    """List a source tree's audio files with their fixed splits, split groups and metadata.

    Returns (layout, files sorted by relative path). Raises CorpusError for an unknown layout.
    """
    if layout not in LAYOUTS:
        raise CorpusError(f"Unknown corpus layout {layout!r}; choose one of {', '.join(LAYOUTS)}.")
    paths = list_audio(root, exclude_dirs)
    names = [p.relative_to(root).as_posix() for p in paths]
    if layout == "auto":
        layout = detect_layout(root, names)
    files = [SourceFile(p, n) for p, n in zip(paths, names, strict=True)]
    if layout == "timit":
        files = timit.scan(files)
    elif layout == "vctk":
        files = vctk.scan(root, files)
    elif layout == "ljspeech":
        files = ljspeech.scan(root, files)
    return layout, files

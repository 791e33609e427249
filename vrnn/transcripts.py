"""Transcripts and phone alignments of a corpus, stored per split beside its audio.

    {split}.transcripts.jsonl   one line per file with words: {"file", "text"}
    {split}.alignments.jsonl    one line per aligned file: {"file", "phones": [[start_s, end_s, label], ...],
                                "words": [...]} (PocketSphinx forced alignment of the transcript), or
                                {"file", "error"} when it could not be aligned

Where the words come from: for the default corpus (Debian's Allison Smith prompts), Debian's
`asterisk-core-sounds-en` ships `core-sounds-en.txt`, the words of every prompt ("name: words"), obtained
like the audio (`apt-get download` + `dpkg -x`, or an installed copy); for TIMIT, LJSpeech and VCTK trees,
the manifest's "text". Prompts whose text is a note ("[this is a simple beep tone]") get no transcript.

`references(corpus, split)` gives every file's reference segmentation: TIMIT's .PHN phones when the manifest
has them, else the stored alignment.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE
from .corpora.asterisk import extract_debian_package
from .segments import Reference, Segment, SegmentsError, from_rows, make_reference, to_rows

TEXT_PACKAGE = "asterisk-core-sounds-en"
TEXT_FILE = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt"  # .gz in the Debian package


# Where core-sounds-en.txt's words are not what the recording says (found when the forced alignment failed
# and the corrected text aligned): prompt name -> the words spoken.
TEXT_FIXES = {"invalid": "I'm sorry, that's not a valid extension. Please try again."}


class TranscriptError(RuntimeError):
    """The transcripts cannot be obtained; the message says why and what to do."""


def find_core_sounds_text(cache: Path) -> Path:
    """core-sounds-en.txt(.gz): an installed copy, or `apt-get download asterisk-core-sounds-en` + `dpkg -x`
    into `cache` (23 kB, no installation). Raises TranscriptError when neither works."""
    for root in (Path("/"), cache / "deb"):
        for suffix in ("", ".gz"):
            p = root / (TEXT_FILE + suffix)
            if p.is_file():
                return p
    try:
        extract_debian_package(TEXT_PACKAGE, cache / "deb")
    except OSError as e:
        raise TranscriptError(f"Could not obtain Debian package {TEXT_PACKAGE} ({e}). Run 'apt-get update' "
                              f"first or install it with 'apt-get install {TEXT_PACKAGE}'.") from None
    for suffix in (".gz", ""):
        p = cache / "deb" / (TEXT_FILE + suffix)
        if p.is_file():
            return p
    raise TranscriptError(f"{TEXT_PACKAGE} has no {Path(TEXT_FILE).name}.")


def parse_core_sounds(text: str) -> dict[str, str]:
    """'name: words' lines (';' comments) -> {name: words}; names may hold a folder ('digits/1');
    notes in brackets ('[ascending tones]') are dropped, and so are names left without words."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(";") or ":" not in line:
            continue
        name, words = line.split(":", 1)
        words = " ".join(w for w in words.replace("...", " ").split())
        if words and not (words.startswith("[") and words.endswith("]")):
            out[name.strip()] = words
    return out


def asterisk_texts(cache: Path) -> dict[str, str]:
    """{prompt name without extension: words} of the Allison Smith prompts."""
    p = find_core_sounds_text(cache)
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    return {**parse_core_sounds(raw.decode("utf-8", errors="replace")), **TEXT_FIXES}


def _is_asterisk(corpus) -> bool:
    return "asterisk-core-sounds" in corpus.meta.get("source", {}).get("name", "")


def store_transcripts(corpus) -> dict[str, int]:
    """Write {split}.transcripts.jsonl for `corpus` (a vrnn.data.Corpus). Returns {split: files with text}.
    Raises TranscriptError when the Allison prompts' text cannot be obtained."""
    from .data import SPLITS

    texts = asterisk_texts(corpus.root / "_cache") if _is_asterisk(corpus) else {}
    counts = {}
    for split in SPLITS:
        rows = []
        for r in corpus.files(split):
            key = str(Path(r["file"]).with_suffix("").as_posix())
            text = texts.get(key) or r.get("text")
            if text:
                rows.append({"file": r["file"], "text": text})
        _write_jsonl(corpus.root / f"{split}.transcripts.jsonl", rows)
        counts[split] = len(rows)
    return counts


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def clip_audio(corpus, row: dict) -> np.ndarray:
    """float32 [N] in [-1, 1]: one manifest row's audio from its split's array."""
    a = corpus.audio(row["split"])
    return np.asarray(a[row["offset"]: row["offset"] + row["length"]], dtype=np.float32) / 32768.0


def store_alignments(corpus, split: str, progress: bool = True) -> tuple[int, list[str]]:
    """Force-align every transcript of `split` (`vrnn.align.align`) and write {split}.alignments.jsonl.
    Returns (files aligned, ['file: why' for each failure]). About 0.2 s per second of audio on one core."""
    from tqdm import tqdm

    from .align import align

    rows_by_file = {r["file"]: r for r in corpus.files(split)}
    out, failed = [], []
    for t in tqdm(read_jsonl(corpus.root / f"{split}.transcripts.jsonl"), desc=f"align {split}", unit="file",
                  disable=not progress):
        row = rows_by_file.get(t["file"])
        if row is None:
            continue
        try:
            ref = align(clip_audio(corpus, row), SAMPLE_RATE, t["text"])
        except SegmentsError as e:
            out.append({"file": t["file"], "error": str(e)})
            failed.append(f"{t['file']}: {e}")
            continue
        out.append({"file": t["file"], "phones": to_rows(ref.phones), "words": to_rows(ref.words)})
    _write_jsonl(corpus.root / f"{split}.alignments.jsonl", out)
    return sum("phones" in r for r in out), failed


def references(corpus, split: str) -> dict[str, Reference]:
    """{file: Reference} for the files of `split` that have one: TIMIT .PHN phones from the manifest (sample
    offsets at 16 kHz), else {split}.alignments.jsonl. Files whose reference is bad are left out."""
    out = {}
    rows = corpus.files(split)
    for r in rows:
        if "phones" in r:
            segs = [Segment(a / SAMPLE_RATE, b / SAMPLE_RATE, p) for a, b, p in r["phones"]]
            try:
                out[r["file"]] = make_reference(segs, r["length"] / SAMPLE_RATE, source=r["file"])
            except SegmentsError:
                continue
    if out:
        return out
    lengths = {r["file"]: r["length"] / SAMPLE_RATE for r in rows}
    for a in read_jsonl(corpus.root / f"{split}.alignments.jsonl"):
        if "phones" in a and a["file"] in lengths:
            try:
                out[a["file"]] = make_reference(from_rows(a["phones"]), lengths[a["file"]], from_rows(a["words"]),
                                                source=a["file"])
            except SegmentsError:
                continue
    return out

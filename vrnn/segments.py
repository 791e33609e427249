"""Reference segmentations of a clip: phones (and words) with start and end times in seconds.

Readers for the formats people have (every one returns a `Reference`):

    Praat TextGrid   read with praatio; the phone tier is the interval tier named phones/phone/phonemes/
                     segments/PHN (any case), else the only interval tier; a words/word tier is kept too
    TIMIT .PHN/.WRD  "start end label" per line, sample offsets at 16 kHz (`sample_rate` to change)
    CSV / TSV        start, end, label per row in seconds (comma, tab or semicolon; a header row is skipped)

Silence labels (`SILENCE`: "", sil, sp, pau, h#, epi, <s>, </s>, ...) and unlabelled gaps are silence.
Boundaries (`Reference.boundaries`) are the times strictly inside the clip where one segment meets the
next or speech meets silence; "phone-to-phone" boundaries are those with a phone on both sides.

Bad references raise `SegmentsError` (a ValueError) with a sentence naming the problem: a file that is
not the format its name says, times that are not numbers, an end before its start, a time past the clip's
end, overlapping segments, or a tier without a labelled interval.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE

# Labels that mark silence or non-speech in the formats we read: Praat/MFA/PocketSphinx ("", sil, sp, spn,
# <s>, </s>, <sil>), TIMIT (h#, pau, epi), Buckeye/BPC-style (sil, silence, noise).
SILENCE = frozenset({"", "sil", "sp", "spn", "<sil>", "<s>", "</s>", "silence", "h#", "pau", "epi", "noise", "#",
                     "+nsn+", "+spn+", "[noise]", "[sil]"})
END_SLACK = 0.005  # s: an end time this far past the clip's end is trimmed to it, further is an error
PHONE_TIERS = ("phones", "phone", "phonemes", "phoneme", "segments", "phn")
WORD_TIERS = ("words", "word", "wrd", "orthography")
FORMATS = (".textgrid", ".phn", ".wrd", ".csv", ".tsv", ".txt")  # what `read_reference` accepts


class SegmentsError(ValueError):
    """A reference segmentation that cannot be used; the message says what is wrong and where."""


def is_silence(label: str) -> bool:
    return label.strip().lower() in SILENCE


@dataclass(frozen=True)
class Segment:
    """One labelled interval: start, end in seconds (start < end)."""

    start: float
    end: float
    label: str


@dataclass
class Reference:
    """Reference segments of one clip, sorted by start, non-overlapping, inside [0, duration].

    phones: the segments boundaries are scored against (phones, or whatever the chosen tier holds);
    words: the word tier when the source has one, else empty; duration: the clip's length in s (the
    TextGrid's xmax, or the audio's length when given); source: where it came from, for messages.
    """

    phones: list[Segment]
    duration: float
    words: list[Segment] = field(default_factory=list)
    source: str = ""

    def boundaries(self, phone_to_phone: bool = False) -> np.ndarray:
        """float64 [B] s, sorted: where one segment meets the next (or speech meets silence / a gap),
        strictly inside (0, duration), times closer than 1 ms merged. With `phone_to_phone`, only the
        boundaries with a non-silence phone ending there and another starting there."""
        return _boundaries(self.phones, self.duration, phone_to_phone)

    def silence_edges(self) -> np.ndarray:
        """float64 [B] s: the boundaries that are not phone-to-phone (speech meets silence or a gap)."""
        every = self.boundaries()
        p2p = self.boundaries(phone_to_phone=True)
        return every[~np.isin(np.round(every, 6), np.round(p2p, 6))]

    def speech_phones(self) -> list[Segment]:
        return [s for s in self.phones if not is_silence(s.label)]

    def crop(self, duration: float) -> Reference:
        """The reference cut to [0, duration]: later segments dropped, one spanning `duration` shortened."""
        cut = lambda segs: [Segment(s.start, min(s.end, duration), s.label) for s in segs  # noqa: E731
                            if s.start < duration - 1e-9]
        return Reference(cut(self.phones), duration, cut(self.words), self.source)


def _boundaries(segs: list[Segment], duration: float, phone_to_phone: bool) -> np.ndarray:
    eps = 1e-3  # s
    speech = [s for s in segs if not is_silence(s.label)]
    if phone_to_phone:
        ends = np.array([s.end for s in speech])
        starts = np.array([s.start for s in speech])
        if len(speech) < 2:
            return np.zeros(0)
        # a phone ends where the next phone starts (within 1 ms): a phone-to-phone boundary
        j = np.searchsorted(starts, ends - eps)
        out = [e for e, k in zip(ends, j, strict=True) if k < len(starts) and abs(starts[k] - e) <= eps]
    else:  # every edge of every speech segment (silences are the gaps between them)
        out = [t for s in speech for t in (s.start, s.end)]
    t = np.unique(np.round(np.asarray(out, dtype=np.float64), 6))
    t = t[(t > eps) & (t < duration - eps)]
    if len(t) > 1:  # merge times closer than 1 ms (a phone's end and the next one's start)
        keep = np.concatenate([[True], np.diff(t) > eps])
        t = t[keep]
    return t


def validate(segments: list[Segment], duration: float | None, what: str) -> list[Segment]:
    """Sort `segments` and check them; returns them with ends trimmed to `duration` when they pass it by at
    most END_SLACK. Raises SegmentsError for no labelled segment, a non-finite or negative time, an end not
    after its start, a time past the clip's end, or two overlapping segments (naming them)."""
    if not any(not is_silence(s.label) for s in segments):
        raise SegmentsError(f"{what} has no labelled (non-silence) segment: nothing to score against.")
    segs = sorted(segments, key=lambda s: (s.start, s.end))
    for s in segs:
        if not (np.isfinite(s.start) and np.isfinite(s.end)):
            raise SegmentsError(f"{what}: segment '{s.label}' has a time that is not a number ({s.start}, {s.end}).")
        if s.start < 0:
            raise SegmentsError(f"{what}: segment '{s.label}' starts before 0 s ({s.start:.3f} s).")
        if s.end <= s.start:
            raise SegmentsError(f"{what}: segment '{s.label}' ends ({s.end:.3f} s) before it starts ({s.start:.3f} s).")
    if duration is not None:
        late = [s for s in segs if s.end > duration + END_SLACK]
        if late:
            raise SegmentsError(f"{what}: segment '{late[0].label}' at {late[0].start:.3f}-{late[0].end:.3f} s "
                                f"runs past the clip's end ({duration:.3f} s); is it the reference of another clip?")
        segs = [Segment(s.start, min(s.end, duration), s.label) for s in segs]
    for a, b in zip(segs, segs[1:], strict=False):
        if b.start < a.end - 1e-6:
            raise SegmentsError(f"{what}: segments '{a.label}' ({a.start:.3f}-{a.end:.3f} s) and '{b.label}' "
                                f"({b.start:.3f}-{b.end:.3f} s) overlap.")
    return segs


def make_reference(phones: list[Segment], duration: float | None, words: list[Segment] | None = None,
                   source: str = "reference") -> Reference:
    """A validated Reference; duration None takes the last segment's end."""
    phones = validate(phones, duration, source)
    duration = float(duration if duration is not None else phones[-1].end)
    words = validate(words, duration, source + " (words)") if words else []
    return Reference(phones, duration, words, source)


# -- readers ----------------------------------------------------------------------------------------------------

def _text(source: str | os.PathLike | bytes) -> str:
    if isinstance(source, (bytes, bytearray)):
        raw = bytes(source)
    else:
        raw = Path(source).read_bytes()
    for enc in ("utf-8-sig", "utf-16"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def read_textgrid(source: str | os.PathLike | bytes, duration: float | None = None, tier: str | None = None,
                  name: str | None = None) -> Reference:
    """A Praat TextGrid (long or short text format) -> Reference, read with praatio.

    The phone tier is `tier`, else the interval tier named like PHONE_TIERS, else the only interval tier;
    a word tier (WORD_TIERS) is kept when present. duration: the clip's length in s; None uses the
    TextGrid's xmax. Raises SegmentsError (not a TextGrid, no interval tier, empty tier, bad times).
    """
    from praatio import textgrid

    what = name or (Path(source).name if not isinstance(source, (bytes, bytearray)) else "the TextGrid")
    text = _text(source)
    if "TextGrid" not in text[:200] and "IntervalTier" not in text:
        raise SegmentsError(f"{what} is not a Praat TextGrid (no 'TextGrid' header).")
    with tempfile.TemporaryDirectory() as tmp:  # praatio reads files only
        path = Path(tmp) / "ref.TextGrid"
        path.write_text(text, encoding="utf-8")
        try:
            tg = textgrid.openTextgrid(str(path), includeEmptyIntervals=False, reportingMode="silence")
        except Exception as e:  # praatio raises IndexError, ValueError, TextgridStateError ... on bad files
            raise SegmentsError(f"{what} could not be read as a TextGrid ({type(e).__name__}: {e}).") from None
    intervals = {n: tg.getTier(n) for n in tg.tierNames if isinstance(tg.getTier(n), textgrid.IntervalTier)}
    if not intervals:
        raise SegmentsError(f"{what} has no interval tier (point tiers hold no segments).")
    lower = {n.lower(): n for n in intervals}
    if tier is not None:
        if tier not in intervals:
            raise SegmentsError(f"{what} has no interval tier '{tier}'; it has {', '.join(intervals)}.")
        phone_tier = tier
    else:
        phone_tier = next((lower[t] for t in PHONE_TIERS if t in lower), None)
        if phone_tier is None:
            non_word = [n for n in intervals if n.lower() not in WORD_TIERS]
            if len(non_word) != 1:
                raise SegmentsError(f"{what}: which tier holds the phones? Name it 'phones' or pass a tier "
                                    f"(it has {', '.join(intervals)}).")
            phone_tier = non_word[0]
    word_tier = next((lower[t] for t in WORD_TIERS if t in lower and lower[t] != phone_tier), None)
    segs = lambda n: [Segment(float(e.start), float(e.end), e.label.strip()) for e in intervals[n].entries]  # noqa: E731
    phones = segs(phone_tier)
    if not any(not is_silence(s.label) for s in phones):
        raise SegmentsError(f"{what}: tier '{phone_tier}' is empty (no labelled interval).")
    duration = float(tg.maxTimestamp) if duration is None else duration
    return make_reference(phones, duration, segs(word_tier) if word_tier else None, f"{what} [{phone_tier}]")


def _read_sample_table(source, what: str, sample_rate: int) -> list[Segment]:
    out = []
    for i, line in enumerate(_text(source).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise SegmentsError(f"{what}, line {i}: expected 'start end label' (sample offsets), got '{line.strip()}'.")
        try:
            a, b = int(parts[0]), int(parts[1])
        except ValueError:
            raise SegmentsError(f"{what}, line {i}: start and end must be whole sample offsets, "
                                f"got '{parts[0]}' and '{parts[1]}'.") from None
        out.append(Segment(a / sample_rate, b / sample_rate, " ".join(parts[2:])))
    if not out:
        raise SegmentsError(f"{what} is empty.")
    return out


def read_phn(source: str | os.PathLike | bytes, duration: float | None = None, words=None,
             sample_rate: int = SAMPLE_RATE, name: str | None = None) -> Reference:
    """TIMIT .PHN (and optionally its .WRD, `words`) -> Reference. Lines are 'start end label' with sample
    offsets at `sample_rate` (TIMIT: 16 kHz). Raises SegmentsError."""
    what = name or (Path(source).name if not isinstance(source, (bytes, bytearray)) else "the .PHN file")
    phones = _read_sample_table(source, what, sample_rate)
    w = _read_sample_table(words, f"{what} (words)", sample_rate) if words is not None else None
    return make_reference(phones, duration, w, what)


def read_csv(source: str | os.PathLike | bytes, duration: float | None = None, name: str | None = None) -> Reference:
    """CSV/TSV rows 'start, end, label' in seconds (comma, tab or semicolon; one header row allowed;
    a missing label is silence) -> Reference. Raises SegmentsError."""
    what = name or (Path(source).name if not isinstance(source, (bytes, bytearray)) else "the CSV file")
    text = _text(source)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise SegmentsError(f"{what} is empty.")
    delim = "\t" if "\t" in lines[0] else (";" if lines[0].count(";") > lines[0].count(",") else ",")
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delim))
    segs = []
    for i, row in enumerate(rows, 1):
        row = [c.strip() for c in row]
        if len(row) < 2:
            raise SegmentsError(f"{what}, row {i}: expected start, end, label in seconds, got {delim.join(row)!r}.")
        try:
            a, b = float(row[0]), float(row[1])
        except ValueError:
            if i == 1:
                continue  # a header
            raise SegmentsError(f"{what}, row {i}: start and end must be numbers of seconds, "
                                f"got '{row[0]}' and '{row[1]}'.") from None
        segs.append(Segment(a, b, row[2] if len(row) > 2 else ""))
    if not segs:
        raise SegmentsError(f"{what} has no rows of start, end, label.")
    return make_reference(segs, duration, None, what)


def read_reference(source: str | os.PathLike | bytes, duration: float | None = None, name: str | None = None,
                   sample_rate: int = SAMPLE_RATE) -> Reference:
    """Read any supported reference file, by its name's extension (`name` for bytes, e.g. an upload's
    name): .TextGrid, .PHN/.WRD (TIMIT), .csv/.tsv/.txt (seconds). A .PHN gets its .WRD beside it.
    Raises SegmentsError for an unknown extension or a bad file."""
    fname = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "")
    ext = Path(fname).suffix.lower()
    label = Path(fname).name or None
    if ext == ".textgrid":
        return read_textgrid(source, duration, name=label)
    if ext in (".phn", ".wrd"):
        words = None
        if ext == ".phn" and not isinstance(source, (bytes, bytearray)):
            for s in (".WRD", ".wrd"):
                if Path(source).with_suffix(s).is_file():
                    words = Path(source).with_suffix(s)
        return read_phn(source, duration, words, sample_rate, name=label)
    if ext in (".csv", ".tsv", ".txt"):
        return read_csv(source, duration, name=label)
    raise SegmentsError(f"'{Path(fname).name or 'the file'}' is not a reference format we read "
                        f"({', '.join(FORMATS)}).")


def write_textgrid(ref: Reference, path: str | os.PathLike) -> None:
    """Write `ref` as a long-format Praat TextGrid with tiers 'phones' (and 'words'), gaps as empty
    intervals, xmax = the clip's duration."""
    from praatio import textgrid

    tg = textgrid.Textgrid()
    for name, segs in (("words", ref.words), ("phones", ref.phones)):
        if segs:
            entries = [(s.start, s.end, s.label) for s in segs if not is_silence(s.label) or s.label]
            tg.addTier(textgrid.IntervalTier(name, entries, 0.0, ref.duration))
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True, minTimestamp=0.0,
            maxTimestamp=ref.duration, reportingMode="silence")


def to_rows(segs: list[Segment]) -> list[list]:
    """[[start_s, end_s, label], ...] with times rounded to 0.1 ms (for JSON)."""
    return [[round(s.start, 4), round(s.end, 4), s.label] for s in segs]


def from_rows(rows: list[list]) -> list[Segment]:
    return [Segment(float(a), float(b), str(lab)) for a, b, lab in rows]

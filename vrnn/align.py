"""Forced alignment of a typed transcript to a clip with PocketSphinx 5 (phones and words, 10 ms steps).

    ref = align(waveform, 16000, "your call cannot be completed as dialed")
    write_textgrid(ref, "clip.TextGrid")

PyPI `pocketsphinx` ships the CMU en-us acoustic model (a continuous HMM, 16 kHz) and the CMU pronouncing
dictionary, so nothing is downloaded. Text is normalised first (`normalize_text`: lower case, digits to
words, # and * to "pound" and "star", punctuation dropped); a word the dictionary lacks raises AlignError
naming every such word. PocketSphinx picks among a word's listed pronunciations and inserts optional
silences between words.

Leading and trailing silence: prompts are often cut within a few ms of the first sound, and then the
aligner's first phone swallows the start (it has no frames of silence to put there). So the clip is padded
with `PAD` s of faint noise on both sides before aligning; the padding is aligned as silence and cut off
again, so the clip's own leading and trailing pauses come out as silence segments.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import numpy as np

from .audio import SAMPLE_RATE
from .segments import Reference, Segment, SegmentsError, make_reference

PAD = 0.15  # s added before and after the clip while aligning (0.1-0.2 s fit the real clips best, see docs/segmentation.md)
RETRY_PADS = (0.3, 0.05)  # s, tried in turn when a word goes missing (the search sometimes drops a lone short word)
PAD_NOISE = 2.0  # std of the added noise in int16 units (about -84 dBFS, below the corpus's room tone)
ALIGN_FRAME = 0.01  # s, PocketSphinx's frame step: alignment times are multiples of it

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SYMBOLS = {"#": " pound ", "*": " star ", "&": " and ", "%": " percent ", "+": " plus ", "@": " at "}
QUIET_DB = 40.0  # dB below the clip's loudest 5 ms: quieter stretches are pauses
MIN_PAUSE = 0.05  # s: a quiet stretch this long inside a vowel, glide, liquid or nasal is a pause the aligner missed
SONORANTS = frozenset("aa ae ah ao aw ay eh er ey ih iy ow oy uh uw l r w y m n ng".split())

# Words the CMU dictionary lacks that our corpus needs, in its ARPAbet phones (no stress marks).
EXTRA_WORDS = {"undelete": "AH N D IH L IY T"}
_lock = threading.Lock()


class AlignError(SegmentsError):
    """The transcript cannot be aligned to the clip (unknown words, empty text, no alignment found)."""


def number_words(n: int) -> list[str]:
    """0 <= n < 10**9 -> its English words, e.g. 162 -> one hundred sixty two."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    for size, word in ((10 ** 6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = number_words(n % size) if n % size else []
            return number_words(n // size) + [word] + rest
    raise AssertionError(n)


def normalize_text(text: str) -> list[str]:
    """A transcript -> the word list PocketSphinx is given: lower case; '#', '*', '&' as words; digit runs as
    number words (a run of 4+ digits digit by digit); letters glued to digits split ('3D' -> three d);
    other punctuation dropped except apostrophes inside words."""
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = re.sub(r"\[[^\]]*\]", " ", text.lower())  # [bracketed notes] are not words
    words = []
    for tok in re.findall(r"[a-z]+(?:'[a-z]+)*|\d+", text):
        if tok.isdigit():
            words += [w for d in tok for w in number_words(int(d))] if len(tok) >= 4 else number_words(int(tok))
        else:
            words.append(tok)
    return words


@lru_cache(maxsize=1)
def _decoder():
    from pocketsphinx import Decoder

    d = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    for word, phones in EXTRA_WORDS.items():
        if d.lookup_word(word) is None:
            d.add_word(word, phones, True)
    return d


def missing_words(words: list[str]) -> list[str]:
    """The words of `words` the PocketSphinx en-us dictionary lacks (sorted, unique)."""
    with _lock:
        d = _decoder()
        return sorted({w for w in words if d.lookup_word(w) is None})


def align(waveform: np.ndarray, sample_rate: int, text: str, pad: float = PAD) -> Reference:
    """Forced-align `text` to one clip: a Reference with a 'phones' tier (ARPAbet without stress, 'sil'
    for silence) and a 'words' tier, times in s inside [0, clip length].

    waveform: float32 [N] at 16 kHz (use `load_audio`). Raises AlignError for another rate, a transcript with
    no words or with words missing from the dictionary (all of them named), or when PocketSphinx finds no
    alignment. Takes about 0.2 s per second of audio on one CPU core.
    """
    if sample_rate != SAMPLE_RATE:
        raise AlignError(f"align expects {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; load it with load_audio.")
    words = normalize_text(text)
    if not words:
        raise AlignError("The transcript has no words to align.")
    unknown = missing_words(words)
    if unknown:
        raise AlignError(f"Not in the pronouncing dictionary: {', '.join(unknown)}. Spell these words as they "
                         "sound (e.g. 'three d' for '3D'), or leave them out.")
    x = np.clip(np.round(np.asarray(waveform, np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    duration = len(x) / SAMPLE_RATE
    error = "PocketSphinx found no alignment of the transcript to this clip."
    for p in (pad, *RETRY_PADS):
        try:
            phones, word_segs = _align_once(x, words, p)
        except AlignError as e:
            error = str(e)
            continue
        if len(word_segs) == len(words):  # every word found inside the clip
            phones = split_pauses(phones, x)
            return make_reference(_fill_gaps(phones, duration), duration, word_segs,
                                  "forced alignment (PocketSphinx en-us)")
        error = (f"PocketSphinx placed only {len(word_segs)} of the {len(words)} words inside the clip; "
                 "does the transcript match the audio?")
    raise AlignError(error)


def _align_once(x: np.ndarray, words: list[str], pad: float) -> tuple[list[Segment], list[Segment]]:
    """One PocketSphinx run over int16 `x` padded by `pad` s: (phone segments, word segments) in clip time."""
    duration = len(x) / SAMPLE_RATE
    n_pad = int(round(pad * SAMPLE_RATE / 160)) * 160  # whole 10 ms frames
    padded = np.concatenate([np.zeros(n_pad, np.int16), x, np.zeros(n_pad, np.int16)])
    # faint noise over everything: the padding then sounds like room tone, and runs of digital zeros in the clip
    # (PocketSphinx takes log energies) do not derail the search
    noise = np.round(np.random.default_rng(0).normal(0.0, PAD_NOISE, len(padded)))
    raw = np.clip(padded + noise, -32768, 32767).astype(np.int16).tobytes()
    offset = n_pad / SAMPLE_RATE
    with _lock:
        d = _decoder()
        try:
            d.set_align_text(" ".join(words))
            for second_pass in (False, True):  # words first, then phones within them
                if second_pass:
                    d.set_alignment()
                d.start_utt()
                d.process_raw(raw, full_utt=True)
                d.end_utt()
            alignment = d.get_alignment()
        except RuntimeError as e:
            raise AlignError(f"PocketSphinx could not align the transcript to this clip ({e}).") from None
        if alignment is None:
            raise AlignError("PocketSphinx found no alignment of the transcript to this clip.")
        phones, word_segs = [], []
        for w in alignment:
            name = re.sub(r"\(\d+\)$", "", w.name)
            silent = name in ("<sil>", "<s>", "</s>")
            ws, we = _clip(w.start, w.start + w.duration, offset, duration)
            if we > ws and not silent:
                word_segs.append(Segment(ws, we, name))
            for p in w:
                ps, pe = _clip(p.start, p.start + p.duration, offset, duration)
                if pe > ps:
                    phones.append(Segment(ps, pe, "sil" if silent or p.name == "SIL" else p.name.lower()))
    return phones, word_segs


def split_pauses(phones: list[Segment], x: np.ndarray) -> list[Segment]:
    """Give back to silence the pauses the aligner put inside a sonorant (PocketSphinx inserts no silence
    between words unless it wants to: "sorry, but" got a 0.31 s "iy" holding 0.13 s of pause).

    x: int16 [N] at 16 kHz. A run of at least MIN_PAUSE s of 5 ms frames QUIET_DB below the clip's loudest,
    inside a vowel, glide, liquid or nasal, ends that phone (the rest of it becomes silence); a run at the
    phone's start delays its start instead. Stops and fricatives keep their silent closures.
    """
    hop = 80  # samples = 5 ms
    fr = x[: len(x) // hop * hop].astype(np.float64).reshape(-1, hop)
    db = 10 * np.log10((fr ** 2).mean(1) + 1e-6)
    quiet = db < db.max() - QUIET_DB
    need = int(round(MIN_PAUSE * SAMPLE_RATE / hop))
    out = []
    for s in phones:
        i0, i1 = int(round(s.start * SAMPLE_RATE / hop)), int(round(s.end * SAMPLE_RATE / hop))
        q = quiet[i0:i1]
        if s.label not in SONORANTS or len(q) < need:
            out.append(s)
            continue
        runs = np.flatnonzero(np.convolve(q.astype(int), np.ones(need, int), "valid") == need)  # starts of full runs
        if not len(runs):
            out.append(s)
            continue
        start = i0
        if runs[0] == 0:  # the phone begins with a pause: start it where the quiet ends
            k = int(np.argmin(q)) if not q.all() else len(q)
            start = i0 + k
            later = runs[runs > k]
        else:
            later = runs
        end = i0 + int(later[0]) if len(later) else i1
        if end - start < 4:  # under 20 ms of the phone would be left: keep the aligner's segment
            out.append(s)
            continue
        t = lambda i: round(i * hop / SAMPLE_RATE, 4)  # noqa: E731
        if start > i0:
            out.append(Segment(s.start, t(start), "sil"))
        out.append(Segment(t(start), t(end), s.label))
        if end < i1:
            out.append(Segment(t(end), s.end, "sil"))
    return out


def _clip(start_frame: int, end_frame: int, offset: float, duration: float) -> tuple[float, float]:
    a = min(max(start_frame * ALIGN_FRAME - offset, 0.0), duration)
    b = min(max(end_frame * ALIGN_FRAME - offset, 0.0), duration)
    return round(a, 4), round(b, 4)


def _fill_gaps(phones: list[Segment], duration: float) -> list[Segment]:
    """Silence segments where the alignment leaves time uncovered (the clip's ends), merged with neighbours."""
    out: list[Segment] = []
    t = 0.0
    for s in phones + [Segment(duration, duration, "sil")]:
        if s.start > t + 1e-6:
            out.append(Segment(t, s.start, "sil"))
        if s.end > s.start:
            out.append(s)
        t = max(t, s.end)
    merged: list[Segment] = []
    for s in out:
        if merged and s.label == "sil" and merged[-1].label == "sil":
            merged[-1] = Segment(merged[-1].start, s.end, "sil")
        else:
            merged.append(s)
    return merged

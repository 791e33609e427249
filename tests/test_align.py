"""Forced alignment with PocketSphinx on real speech (the bundled example clips)."""

from pathlib import Path

import numpy as np
import pytest

from vrnn.align import AlignError, align, normalize_text, number_words
from vrnn.audio import load_audio
from vrnn.segments import read_textgrid

EXAMPLES = Path(__file__).parent.parent / "assets/examples"


def test_normalize_text():
    assert number_words(162) == ["one", "hundred", "sixty", "two"]
    assert normalize_text("Press 1, then # or * [beep]. 3D isn't H.323") == [
        "press", "one", "then", "pound", "or", "star", "three", "d", "isn't", "h", "three", "hundred", "twenty", "three"]


def test_unknown_words_are_named():
    x, sr = load_audio(EXAMPLES / "allison-vm-nobodyavail.wav")
    with pytest.raises(AlignError, match="blorptastic, zzyzx"):
        align(x, sr, "nobody zzyzx blorptastic")
    with pytest.raises(AlignError, match="no words"):
        align(x, sr, " ... ")


def test_alignment_of_a_real_clip_has_silence_at_the_ends():
    x, sr = load_audio(EXAMPLES / "allison-vm-nobodyavail.wav")
    ref = align(x, sr, "Nobody is available to take your call at the moment")
    words = [w.label for w in ref.words]
    assert words == "nobody is available to take your call at the moment".split()
    labels = [s.label for s in ref.phones]
    assert labels[0] == "sil" and labels[-1] == "sil" and labels[1] == "n"
    # speech starts ~0.11 s in (the energy rises from -65 to -29 dB between 0.10 and 0.12 s) and ends ~2.68 s
    assert 0.07 <= ref.phones[1].start <= 0.14
    assert 2.55 <= ref.phones[-1].start <= 2.75
    assert ref.phones[-1].end == pytest.approx(len(x) / sr)
    starts = np.array([s.start for s in ref.phones])
    assert np.all(np.diff(starts) > 0) and np.allclose(starts * 100, np.round(starts * 100))  # 10 ms steps


def test_bundled_example_textgrids_read_back():
    for wav in sorted(EXAMPLES.glob("*.wav")):
        tg = wav.with_suffix(".TextGrid")
        assert tg.is_file(), f"{tg.name} is missing"
        x, sr = load_audio(wav)
        ref = read_textgrid(tg, duration=len(x) / sr)
        assert len(ref.boundaries()) >= 5 and ref.words

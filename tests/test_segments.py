"""Reading reference segmentations (TextGrid, TIMIT .PHN/.WRD, CSV/TSV) and refusing bad ones."""

import numpy as np
import pytest

from vrnn.segments import (
    Reference,
    Segment,
    SegmentsError,
    make_reference,
    read_csv,
    read_reference,
    read_textgrid,
    write_textgrid,
)

PHONES = [Segment(0.0, 0.1, "sil"), Segment(0.1, 0.2, "k"), Segment(0.2, 0.35, "ae"), Segment(0.35, 0.4, "t"),
          Segment(0.4, 0.5, "sil"), Segment(0.5, 0.6, "s"), Segment(0.6, 0.8, "sil")]
WORDS = [Segment(0.1, 0.4, "cat"), Segment(0.5, 0.6, "s")]


def tg_text(intervals, xmax=0.8, name="phones"):
    rows = "".join(f'        intervals [{i}]:\n            xmin = {a}\n            xmax = {b}\n            text = "{t}"\n'
                   for i, (a, b, t) in enumerate(intervals, 1))
    return (f'File type = "ooTextFile"\nObject class = "TextGrid"\n\nxmin = 0\nxmax = {xmax}\ntiers? <exists>\nsize = 1\n'
            f'item []:\n    item [1]:\n        class = "IntervalTier"\n        name = "{name}"\n        xmin = 0\n'
            f'        xmax = {xmax}\n        intervals: size = {len(intervals)}\n{rows}').encode()


def test_boundaries_all_and_phone_to_phone():
    ref = make_reference(PHONES, 0.8, WORDS)
    np.testing.assert_allclose(ref.boundaries(), [0.1, 0.2, 0.35, 0.4, 0.5, 0.6])
    np.testing.assert_allclose(ref.boundaries(phone_to_phone=True), [0.2, 0.35])  # k|ae, ae|t
    np.testing.assert_allclose(ref.silence_edges(), [0.1, 0.4, 0.5, 0.6])


def test_gaps_count_as_silence_and_clip_edges_are_not_boundaries():
    ref = make_reference([Segment(0.0, 0.2, "a"), Segment(0.3, 0.5, "b"), Segment(0.5, 1.0, "c")], 1.0)
    np.testing.assert_allclose(ref.boundaries(), [0.2, 0.3, 0.5])
    np.testing.assert_allclose(ref.boundaries(True), [0.5])


def test_textgrid_round_trip(tmp_path):
    ref = make_reference(PHONES, 0.8, WORDS, "x")
    write_textgrid(ref, tmp_path / "a.TextGrid")
    back = read_reference(tmp_path / "a.TextGrid", duration=0.8)
    assert [s.label for s in back.speech_phones()] == ["k", "ae", "t", "s"]
    assert [s.label for s in back.words] == ["cat", "s"]
    np.testing.assert_allclose(back.boundaries(), ref.boundaries())
    # from bytes too (an upload)
    again = read_reference((tmp_path / "a.TextGrid").read_bytes(), name="up.TextGrid")
    np.testing.assert_allclose(again.boundaries(), ref.boundaries())


def test_phn_wrd_and_csv(tmp_path):
    (tmp_path / "s.PHN").write_text("0 1600 h#\n1600 3200 k\n3200 5600 ae\n5600 6400 t\n6400 12800 h#\n")
    (tmp_path / "s.WRD").write_text("1600 6400 cat\n")
    ref = read_reference(tmp_path / "s.PHN", duration=0.8)
    np.testing.assert_allclose(ref.boundaries(), [0.1, 0.2, 0.35, 0.4])
    assert [w.label for w in ref.words] == ["cat"]
    csv_text = b"start,end,label\n0.1,0.2,k\n0.2,0.35,ae\n0.35,0.4,t\n"
    np.testing.assert_allclose(read_csv(csv_text, 0.8).boundaries(), [0.1, 0.2, 0.35, 0.4])
    tsv = b"0.1\t0.2\tk\n0.2\t0.35\tae\n"
    np.testing.assert_allclose(read_reference(tsv, 0.8, name="x.tsv").boundaries(), [0.1, 0.2, 0.35])


@pytest.mark.parametrize("data, name, message", [
    (b"hello world", "a.TextGrid", "not a Praat TextGrid"),
    (b"not,a,table\nx,y,z\n", "a.csv", "must be numbers"),
    (b"0.1,0.2,k\n0.15,0.3,ae\n", "a.csv", "overlap"),
    (b"0.1,0.2,k\n0.2,1.5,ae\n", "a.csv", "past the clip's end"),
    (b"0.3,0.2,k\n", "a.csv", "before it starts"),
    (b"0 1600 h#\n1600 xx k\n", "a.PHN", "whole sample offsets"),
    (b"", "a.PHN", "empty"),
    (b"0.1,0.2,sil\n", "a.csv", "no labelled"),
    (b"0.1 0.2 k", "a.mp3", "not a reference format"),
])
def test_bad_references_name_the_problem(data, name, message):
    with pytest.raises(SegmentsError, match=message):
        read_reference(data, duration=1.0, name=name)


def test_empty_tier_and_overlapping_textgrid():
    with pytest.raises(SegmentsError, match="empty"):
        read_textgrid(tg_text([(0, 0.8, "")]))
    with pytest.raises(SegmentsError, match="overlap"):
        read_textgrid(tg_text([(0, 0.5, "a"), (0.4, 0.8, "b")]))
    with pytest.raises(SegmentsError, match="past the clip's end"):
        read_textgrid(tg_text([(0, 0.5, "a"), (0.5, 0.8, "b")]), duration=0.6)


def test_crop_keeps_segments_before_the_cut():
    ref = make_reference(PHONES, 0.8)
    cut = ref.crop(0.3)
    assert cut.duration == 0.3 and [s.label for s in cut.phones] == ["sil", "k", "ae"]
    assert cut.phones[-1].end == pytest.approx(0.3)
    assert isinstance(cut, Reference)
    np.testing.assert_allclose(cut.boundaries(), [0.1, 0.2])

"""Issue 13 in the app through AppTest: reference boundaries on Figure 2 (a TextGrid beside an example clip, an
upload, a typed transcript), the score table and its controls, and Compare's one score row per checkpoint. Tiny
random-weight checkpoints from conftest's `app_dirs`; examples: conftest's 2 s clips, one with a TextGrid."""

from __future__ import annotations

import base64
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app import APP, TIMEOUT, assert_clean, figures, navigation_mode, unescape  # noqa: F401 (fixture)

from vrnn.segments import Reference, Segment, write_textgrid

PHONES = ["sil", "h", "eh", "l", "ow", "w", "er", "l", "d", "sil"]


@pytest.fixture
def seg_env(app_dirs, tmp_path, monkeypatch):
    """clip0.wav with clip0.TextGrid beside it (10 segments of 0.2 s), clip1.wav without one."""
    ex = tmp_path / "examples"
    ex.mkdir()
    for f in ("clip0.wav", "clip1.wav"):
        shutil.copy(app_dirs["examples"] / f, ex / f)
    segs = [Segment(round(0.2 * i, 3), round(0.2 * (i + 1), 3), p) for i, p in enumerate(PHONES)]
    write_textgrid(Reference(segs, 2.0), ex / "clip0.TextGrid")
    monkeypatch.setenv("VRNN_CHECKPOINTS", str(app_dirs["checkpoints"]))
    monkeypatch.setenv("VRNN_EXAMPLES", str(ex))
    return ex


@pytest.fixture
def at(seg_env) -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()


def trace_names(spec: dict) -> list[tuple[str, str]]:
    return [(d.get("name"), d.get("yaxis", "y")) for d in spec["data"]]


def values(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64)} as plotly writes numpy arrays."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).astype(np.float64)
    return np.array([np.nan if x is None else x for x in v], dtype=np.float64)


def score_table(at: AppTest):
    (df,) = at.dataframe
    return df.value


def test_bundled_textgrid_gives_lines_peaks_and_score_table(at):
    assert_clean(at)
    assert not at.warning
    (spec,) = figures(at)
    names = trace_names(spec)
    for axis in ("y", "y2", "y3"):  # every row: boundary lines and (10 phones in view) labels
        assert ("reference boundaries", axis) in names
        assert ("reference phones", axis) in names
    lines = next(d for d in spec["data"] if d["name"] == "reference boundaries")
    x = values(lines["x"])
    xs = sorted({round(float(t), 3) for t in x[np.isfinite(x)]})
    assert xs == pytest.approx([0.2 * i for i in range(1, 10)], abs=1e-3)
    assert {"delta peaks", "kl peaks"} <= {n for n, _ in names}
    table = score_table(at)
    assert list(table["signal"]) == ["delta", "kl", "kl_dims", "flux", "energy", "uniform", "random"]
    assert set(table["source"]) == {"vrnn-gauss", "baseline"}
    assert (table["references"] == 9).all()
    assert any("clip0.TextGrid (bundled)" in unescape(c.value) for c in at.caption)


def test_clip_without_reference_has_no_table(at):
    at.selectbox(key="clip").set_value("clip1.wav").run()
    assert_clean(at)
    assert not at.dataframe
    (spec,) = figures(at)
    assert "reference boundaries" not in {n for n, _ in trace_names(spec)}


@pytest.mark.parametrize("name, data, words", [
    ("ref.csv", b"0.0,0.5,a\n0.5,3.5,b\n", "past"),            # times past the 2 s clip's end
    ("ref.csv", b"0.0,0.6,a\n0.5,1.0,b\n", "overlap"),         # overlapping segments
    ("ref.TextGrid", b"not a textgrid at all", "TextGrid"),    # wrong format
])
def test_bad_reference_upload_warns_and_figure_stays(at, name, data, words):
    at.file_uploader(key="reference_upload").set_value((name, data, "text/plain"))
    at.run()
    assert_clean(at)
    assert any(words.lower() in w.value.lower() and "ref" in w.value for w in at.warning), [w.value for w in at.warning]
    (spec,) = figures(at)  # the figure stays, without reference lines, and there is no table
    assert spec["layout"]["meta"]["rows"] == ["delta", "kl", "wave"]
    assert "reference boundaries" not in {n for n, _ in trace_names(spec)}
    assert not at.dataframe


def test_uploaded_csv_replaces_the_bundled_reference(at):
    at.file_uploader(key="reference_upload").set_value(("mine.csv", b"start,end,label\n0.3,0.9,a\n0.9,1.5,b\n",
                                                         "text/csv"))
    at.run()
    assert_clean(at)
    assert not at.warning
    assert (score_table(at)["references"] == 3).all()  # 0.3, 0.9, 1.5 s


def test_tolerance_change_updates_the_table(at):
    before = score_table(at)
    at.number_input(key="seg_tolerance").set_value(100).run()
    assert_clean(at)
    after = score_table(at)
    assert (after["recall"] >= before["recall"]).all()
    assert after["recall"].sum() > before["recall"].sum()
    assert any("100 ms" in c.value for c in at.caption)


def test_manual_peak_picking_moves_the_peaks(at):
    (spec,) = figures(at)
    n_before = len(values(next(d for d in spec["data"] if d["name"] == "kl peaks")["x"]))
    at.selectbox(key="seg_picking").set_value("manual").run()
    at.number_input(key="seg_distance").set_value(12.5).run()
    at.number_input(key="seg_prominence").set_value(0.0).run()
    assert_clean(at)
    (spec,) = figures(at)
    assert len(values(next(d for d in spec["data"] if d["name"] == "kl peaks")["x"])) > n_before
    at.selectbox(key="seg_picking").set_value("top-N").run()
    assert (score_table(at)["detections"][:3] <= 9).all()  # N = the reference's 9 boundaries


def test_unknown_word_in_transcript_warns_by_name(at):
    at.text_area(key="reference_text").set_value("hello qzxvbw").run()
    assert_clean(at)
    assert any("qzxvbw" in w.value for w in at.warning), [w.value for w in at.warning]
    assert figures(at)


def test_compare_has_one_score_row_per_checkpoint(at):
    at.switch_page("pages/compare.py").run()
    assert_clean(at)
    tables = [d.value for d in at.dataframe]
    scores = next(t for t in tables if "kl F1" in t.columns)
    assert list(scores.index[:2]) == ["vrnn-gauss", "run-b/best"]
    assert [i for i in scores.index if str(i).startswith("baseline")] == [
        "baseline: flux", "baseline: energy", "baseline: uniform", "baseline: random"]
    assert 0 <= scores.loc["vrnn-gauss", "kl F1"] <= 1


def test_scoring_controls_never_rerun_the_model(at, monkeypatch):
    import vrnn

    calls = []
    real = vrnn.analyze
    monkeypatch.setattr(vrnn, "analyze", lambda *a, **k: calls.append(1) or real(*a, **k))
    for tol in (10, 40):
        at.number_input(key="seg_tolerance").set_value(tol).run()
    at.selectbox(key="seg_picking").set_value("top-N").run()
    assert_clean(at)
    assert calls == []

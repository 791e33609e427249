"""Reference boundaries and peaks on Figure 2, and one clip's score table."""

from pathlib import Path

import numpy as np

from vrnn import analyze, load_audio
from vrnn.plots import figure2
from vrnn.segments import read_textgrid
from vrnn.segplots import add_peaks, add_reference, score_analysis, score_records

CLIP = Path(__file__).parent.parent / "assets/examples/allison-vm-nobodyavail.wav"


def test_reference_lines_and_labels_on_every_row_and_peaks(tiny_checkpoint):
    from vrnn import load_checkpoint

    x, sr = load_audio(CLIP)
    a = analyze(load_checkpoint(tiny_checkpoint), x, sr)
    ref = read_textgrid(CLIP.with_suffix(".TextGrid"), duration=len(x) / sr)
    fig = figure2(a, spectrogram=True)
    n_rows = len(fig.layout.meta["rows"])
    before = len(fig.data)
    add_reference(fig, ref)
    added = fig.data[before:]
    assert len(added) == 2 * n_rows  # lines + labels per row
    lines = [t for t in added if t.mode == "lines"]
    assert {t.yaxis for t in lines} == {"y", *(f"y{i}" for i in range(2, n_rows + 1))}
    xs = np.asarray(lines[0].x, np.float64)
    np.testing.assert_allclose(np.unique(xs[np.isfinite(xs)]), ref.boundaries(), atol=1e-6)
    labels = [t for t in added if t.mode == "text"][0]
    assert list(labels.text) == [s.label for s in ref.speech_phones()]

    rows, peaks = score_analysis(a, ref, tolerance=0.02, label="tiny")
    assert {(r["source"], r["signal"]) for r in rows} >= {("tiny", "kl"), ("tiny", "delta"), ("baseline", "flux"),
                                                          ("baseline", "uniform"), ("baseline", "random")}
    assert set(peaks) == {"delta", "kl", "kl_dims"}
    n = len(fig.data)
    add_peaks(fig, a, peaks)
    assert len(fig.data) == n + sum(bool(len(peaks[k])) for k in ("delta", "kl"))
    recs = score_records(rows)
    assert all(r["references"] == len(ref.boundaries()) for r in recs)
    assert all(0 <= r["F1"] <= 1 for r in recs)


def test_compare_records_one_row_per_latent_model(tiny_checkpoint):
    from vrnn import VRNN, load_checkpoint, preset
    from vrnn.segplots import compare_records

    x, sr = load_audio(CLIP)
    ref = read_textgrid(CLIP.with_suffix(".TextGrid"), duration=len(x) / sr)
    rnn = VRNN(preset("tiny", "rnn-gauss"), 0.0, 0.1).eval()
    recs = compare_records({"a": analyze(load_checkpoint(tiny_checkpoint), x, sr), "rnn": analyze(rnn, x, sr)}, ref)
    assert recs[0]["checkpoint"] == "a" and "kl F1" in recs[0] and "delta R-value" in recs[0]
    assert [r["checkpoint"] for r in recs[1:]] == [f"baseline: {b}" for b in ("flux", "energy", "uniform", "random")]

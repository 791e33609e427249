"""vrnn.plots: Figure 2 rows and axes, envelopes that keep every peak, the RNN case, extra rows, Figure 3,
training curves. Figures are checked through their JSON, as a browser receives them."""

from __future__ import annotations

import json

import numpy as np
import plotly.io as pio
import pytest

import vrnn
from vrnn.analysis import Analysis
from vrnn.audio import FRAME_SECONDS, FRAME_SIZE, frame_times
from vrnn.plots import compare_figure, envelope, figure2, figure3, training_curves


def synthetic_analysis(seconds: float, z_dim: int = 4, latent: bool = True, seed: int = 0) -> Analysis:
    """An Analysis with known values: a waveform with one isolated spike, random per-frame quantities."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16_000) // FRAME_SIZE * FRAME_SIZE
    wave = (0.1 * rng.standard_normal(n)).astype(np.float32)
    wave[n // 3] = 0.97  # a single-sample peak that an envelope must keep
    wave[2 * n // 3] = -0.93
    t = n // FRAME_SIZE
    z = rng.standard_normal((t, z_dim)) if latent else None
    kl_dim = rng.gamma(1.0, 1.0, (t, z_dim)) if latent else None
    return Analysis(times=frame_times(t), delta=rng.gamma(1.0, 1.0, t) if latent else None,
                    kl=kl_dim.sum(1) if latent else None, log_px=rng.normal(-100, 5, t), z_mean=z,
                    z_std=np.ones((t, z_dim)) if latent else None, prior_mean=0.5 * z if latent else None,
                    prior_std=np.ones((t, z_dim)) if latent else None, kl_per_dim=kl_dim,
                    elbo=-1.0, waveform=wave)


def as_json(fig) -> dict:
    return json.loads(pio.to_json(fig))


def decode(arr) -> np.ndarray:
    """A trace array from figure JSON: a plain list, or plotly's base64 typed array {dtype, bdata, shape}."""
    if isinstance(arr, dict) and "bdata" in arr:
        import base64

        out = np.frombuffer(base64.b64decode(arr["bdata"]), dtype=np.dtype(arr["dtype"]))
        if "shape" in arr:
            out = out.reshape([int(s) for s in str(arr["shape"]).split(",")])
        return out
    return np.asarray(arr, dtype=float)


def traces_on(spec: dict, yaxis: str) -> list[dict]:
    return [t for t in spec["data"] if t.get("yaxis", "y") == yaxis]


@pytest.fixture(scope="module")
def real_analysis(tiny_checkpoint):
    from conftest import speechlike

    model = vrnn.load_checkpoint(tiny_checkpoint)
    return vrnn.analyze(model, speechlike(1.0), 16_000)


def test_figure2_has_three_rows_on_one_time_axis(real_analysis):
    a = real_analysis
    spec = as_json(figure2(a, title="clip"))
    assert spec["layout"]["meta"]["rows"] == ["delta", "kl", "wave"]
    y_axes = sorted(k for k in spec["layout"] if k.startswith("yaxis"))
    assert y_axes == ["yaxis", "yaxis2", "yaxis3"]
    # delta_t on top, KL_t below it, waveform at the bottom: compare the vertical domains
    dom = [spec["layout"][k]["domain"] for k in ("yaxis", "yaxis2", "yaxis3")]
    assert dom[0][0] > dom[1][1] and dom[1][0] > dom[2][1]
    # one shared x axis: the upper rows match the bottom one, whose title is time in seconds
    lay = spec["layout"]
    assert lay["xaxis"]["matches"] == lay["xaxis2"]["matches"] == "x3"
    assert "s" in lay["xaxis3"]["title"]["text"]
    assert lay["xaxis3"]["range"] == pytest.approx([0, a.n_frames * FRAME_SECONDS])
    # the rows hold the analysis' own values (1 s = 80 frames: drawn as is, no envelope)
    (delta,) = traces_on(spec, "y")
    (kl,) = traces_on(spec, "y2")
    np.testing.assert_allclose(decode(delta["y"]), a.delta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(decode(kl["y"]), a.kl, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(decode(kl["x"]), a.times, rtol=1e-6)
    assert all(t["type"] == "scatter" for t in spec["data"])  # SVG, never WebGL (scattergl)


def test_long_waveform_is_an_envelope_that_keeps_every_peak():
    a = synthetic_analysis(30.0)
    spec = as_json(figure2(a, max_points=4000))
    wave = traces_on(spec, "y3")
    assert len(wave) == 2 and wave[1]["fill"] == "tonexty"  # upper line, lower line filled up to it
    hi, lo = decode(wave[0]["y"]), decode(wave[1]["y"])
    assert len(hi) + len(lo) <= 4000 < len(a.waveform)
    assert hi.max() == pytest.approx(a.waveform.max()) and lo.min() == pytest.approx(a.waveform.min())
    assert np.all(hi >= lo)
    x = decode(wave[0]["x"])
    assert x[0] >= 0 and x[-1] <= len(a.waveform) / 16_000 and np.all(np.diff(x) > 0)
    assert len(pio.to_json(figure2(a))) < 400_000  # a 30 s clip stays a light page


def test_envelope_bins_cover_the_series():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(10_001)
    t = np.arange(y.size) * 0.1
    assert envelope(t, y[:100], 100) is None  # short series are drawn as they are
    tb, lo, hi = envelope(t, y, 1000)
    assert len(tb) == len(lo) == len(hi) == 500
    starts = np.linspace(0, y.size, 501).astype(int)
    for i in (0, 123, 499):
        seg = y[starts[i]:starts[i + 1]]
        assert lo[i] == seg.min() and hi[i] == seg.max()
        assert t[starts[i]] <= tb[i] <= t[starts[i + 1] - 1]


def test_rnn_model_has_no_latent_rows():
    a = synthetic_analysis(1.0, latent=False)
    spec = as_json(figure2(a, kl_heatmap=True, means=True))
    assert spec["layout"]["meta"]["rows"] == ["log_px", "wave"]
    (lp,) = traces_on(spec, "y")
    np.testing.assert_allclose(decode(lp["y"]), a.log_px, rtol=1e-5)


def test_extra_rows():
    a = synthetic_analysis(2.0, z_dim=5)
    spec = as_json(figure2(a, spectrogram=True, kl_heatmap=True, means=True, n_dims=2))
    rows = spec["layout"]["meta"]["rows"]
    assert rows == ["delta", "kl", "wave", "mel", "kl_dims", "means"]
    heat = [t for t in spec["data"] if t["type"] == "heatmap"]
    assert len(heat) == 2
    mel, kd = (decode(h["z"]) for h in heat)
    assert mel.shape == (64, a.n_frames) and np.nanmax(mel) <= 0 and np.nanmin(mel) >= -80.001
    np.testing.assert_allclose(kd, a.kl_per_dim.T, rtol=1e-5)  # [Z, T]
    means = traces_on(spec, "y6")
    assert len(means) == 4  # prior and posterior for 2 dimensions
    top = int(np.argmax(a.kl_per_dim.sum(0)))  # the most active dimension comes first
    assert means[0]["name"] == f"prior z{top}"
    np.testing.assert_allclose(decode(means[1]["y"]), a.z_mean[:, top], rtol=1e-5)


@pytest.mark.parametrize("seconds", [60.0, 30.0, 7.3])
def test_long_heatmap_is_reduced_and_keeps_maxima(seconds):
    a = synthetic_analysis(seconds, z_dim=3)  # 4800, 2400, 584 frames
    spec = as_json(figure2(a, spectrogram=True, kl_heatmap=True, max_cols=500))
    mel, kd = [t for t in spec["data"] if t["type"] == "heatmap"]
    z = decode(kd["z"])
    k = -(-a.n_frames // 500)  # frames per column
    assert z.shape == (3, -(-a.n_frames // k)) and z.shape[1] <= 500
    np.testing.assert_allclose(z.max(axis=1), a.kl_per_dim.max(axis=0), rtol=1e-5)
    np.testing.assert_allclose(z[:, 1], a.kl_per_dim[k:2 * k].max(axis=0), rtol=1e-5)  # column 1: frames k..2k-1
    for tr in (mel, kd):  # evenly spaced columns (plotly.js then draws one image, not a rect per cell) ...
        x = decode(tr["x"]).astype(np.float64)
        np.testing.assert_allclose(np.diff(x), k * FRAME_SECONDS, rtol=1e-4)
        # ... each centred on its own frames: column 1 holds frames k .. 2k - 1
        assert x[1] == pytest.approx((a.times[k] + a.times[2 * k - 1]) / 2, abs=1e-5)


def test_time_range_crops_every_row():
    a = synthetic_analysis(4.0)
    spec = as_json(figure2(a, time_range=(1.0, 2.0)))
    assert spec["layout"]["xaxis3"]["range"] == [1.0, 2.0]
    for tr in spec["data"]:
        x = decode(tr["x"])
        assert x.min() >= 1.0 - FRAME_SECONDS and x.max() <= 2.0 + FRAME_SECONDS
    # with the crop the waveform (16000 samples) is drawn in detail again: an envelope of 2000 points (the default)
    wave = traces_on(spec, "y3")
    assert sum(len(decode(t["y"])) for t in wave) == 2000


def test_compare_figure_shares_time_axis_and_scales():
    a, b, r = synthetic_analysis(2.0, seed=1), synthetic_analysis(2.0, seed=2), synthetic_analysis(2.0, latent=False)
    b.delta = b.delta * 10  # a different scale must not give a different axis
    spec = as_json(compare_figure({"a": a, "b": b, "rnn": r}))
    lay = spec["layout"]
    assert lay["meta"]["columns"] == ["a", "b", "rnn"]
    assert [ann["text"] for ann in lay["annotations"][:3]] == ["a", "b", "rnn"]
    # rows: y (delta), y4 (KL), y7 (waveform) in the first column; columns 2 and 3 have the same range
    for first, others in (("yaxis", ("yaxis2", "yaxis3")), ("yaxis4", ("yaxis5", "yaxis6"))):
        for o in others:
            assert lay[o]["range"] == lay[first]["range"]
    assert lay["yaxis"]["range"][1] >= b.delta.max()
    xr = {tuple(lay[k]["range"]) for k in lay if k.startswith("xaxis")}
    assert xr == {(0.0, a.n_frames * FRAME_SECONDS)}
    assert any("RNN" in ann["text"] for ann in lay["annotations"])
    # every column, the right-hand ones too, has its own tick labels; the first column names each row's axis
    ys = [k for k in lay if k.startswith("yaxis")]
    assert len(ys) == 9 and all(lay[k].get("showticklabels") is True for k in ys)
    assert ["KL" in lay["yaxis4"]["title"]["text"], lay["yaxis7"]["title"]["text"]] == [True, "amplitude"]


def test_figure3_one_row_per_sample_same_scale():
    w = {"s1": np.sin(np.linspace(0, 100, 32_000)).astype(np.float32), "s2": 0.1 * np.ones(8_000, np.float32)}
    spec = as_json(figure3(w))
    assert spec["layout"]["meta"]["rows"] == ["s1", "s2"]
    assert spec["layout"]["yaxis"]["range"] == spec["layout"]["yaxis2"]["range"]
    assert spec["layout"]["yaxis"]["range"][1] >= 1.0
    assert spec["layout"]["xaxis"]["matches"] == "x2"


def test_training_curves_from_metrics_rows():
    rows = [{"step": s, "train_elbo_per_frame": -300 + s, "kl_per_frame": 0.1 * s, "finite": True}
            for s in range(10, 60, 10)]
    rows.append({"step": 50, "valid_elbo_per_frame": -260.0, "best": True})
    rows.append({"step": 60, "train_elbo_per_frame": float("nan"), "finite": False})  # skipped step
    spec = as_json(training_curves(rows))
    train, valid, kl = spec["data"]
    np.testing.assert_allclose(decode(train["x"]), [10, 20, 30, 40, 50])
    np.testing.assert_allclose(decode(valid["y"]), [-260.0])
    np.testing.assert_allclose(decode(kl["y"]), [1, 2, 3, 4, 5])
    two = as_json(training_curves({"run-a": rows, "run-b": rows[:2]}))
    assert len(two["data"]) == 6 and two["data"][3]["name"].startswith("run-b")


def test_log_mel_equals_librosa():
    import librosa
    from conftest import speechlike

    from vrnn.plots import log_mel, mel_filterbank

    np.testing.assert_allclose(mel_filterbank(), librosa.filters.mel(sr=16_000, n_fft=400, n_mels=64), rtol=1e-5,
                               atol=1e-8)
    x = speechlike(1.3)
    s = librosa.feature.melspectrogram(y=x, sr=16_000, n_fft=400, hop_length=200, n_mels=64, center=True)
    ref = librosa.power_to_db(s, ref=np.max, top_db=80.0)
    got = log_mel(x)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-3)  # dB


@pytest.mark.parametrize("kw", [{}, {"spectrogram": True, "kl_heatmap": True, "means": True, "title": "t"},
                                {"time_range": (0.5, 1.0), "select": True}])
def test_figure2_is_a_valid_plotly_figure(kw):
    """figure2 skips plotly's validation for speed; here plotly validates every property it wrote."""
    import plotly.graph_objects as go

    fig = figure2(synthetic_analysis(2.0), **kw)
    checked = go.Figure(fig.to_dict())  # raises on any invalid property
    assert checked.layout.meta["rows"] == fig.layout.meta["rows"]


def test_figure2_fits_its_rows_and_takes_extra_shapes():
    from vrnn.plots import add_row_shapes, vlines

    a = synthetic_analysis(2.0)
    spec = as_json(figure2(a, row_px=150, shapes={"kl": vlines([0.5, 1.0]), "nope": vlines([1.0])}, select=True))
    lay = spec["layout"]
    assert lay["height"] <= 3 * 150 + 2 * 26 + 75  # three rows of 150 px, gaps and margins
    assert [(s["xref"], s["yref"], s["x0"]) for s in lay["shapes"]] == [("x2", "y2 domain", 0.5),
                                                                        ("x2", "y2 domain", 1.0)]
    assert lay["dragmode"] == "select" and lay["selectdirection"] == "h"
    fig = add_row_shapes(figure2(a), "wave", vlines([0.25]))
    assert fig.layout.shapes[0].xref == "x3" and fig.layout.shapes[0].yref == "y3 domain"


@pytest.mark.parametrize("dims", [2, 3])
def test_trajectory_figure_paths_highlight_and_labels(dims):
    import plotly.graph_objects as go

    from vrnn.plots import trajectory_figure

    rng = np.random.default_rng(0)
    t = frame_times(400)
    post, prior = rng.standard_normal((400, dims)), rng.standard_normal((400, dims))
    fig = trajectory_figure(post, prior, t)
    spec = as_json(go.Figure(fig.to_dict()))  # valid for plotly
    assert spec["layout"]["meta"]["dims"] == dims and len(spec["layout"]["meta"]["panels"]) == 2
    pts = [d for d in spec["data"] if d["mode"] == "markers"]
    assert len(pts) == 2 and all(len(decode(d["x"])) == 400 for d in pts)  # every frame, both paths
    np.testing.assert_allclose(decode(pts[0]["marker"]["color"]), t, rtol=1e-6)  # coloured by time
    # a highlighted stretch: solid inside, faded outside
    spec = as_json(trajectory_figure(post, prior, t, highlight=(1.0, 2.0)))
    solid = [d for d in spec["data"] if d["mode"] == "markers" and d["marker"]["opacity"] == 1.0]
    faded = [d for d in spec["data"] if d["mode"] == "markers" and d["marker"]["opacity"] < 0.5]
    assert len(solid) == len(faded) == 2
    assert decode(solid[0]["x"]).size == 80  # 1 s of 12.5 ms frames
    # reference labels: one legend entry per label
    labels = ["a"] * 100 + ["b"] * 200 + [""] * 100
    spec = as_json(trajectory_figure(post, None, t, labels=labels))
    assert [d["name"] for d in spec["data"] if d.get("showlegend")] == ["a", "b", "(no label)"]


def test_long_trajectory_is_thinned_but_keeps_the_highlight():
    from vrnn.plots import trajectory_figure

    t = frame_times(48_000)  # 10 minutes
    post = np.random.default_rng(0).standard_normal((48_000, 2))
    spec = as_json(trajectory_figure(post, post, t, highlight=(100.0, 101.0), max_points=3000))
    n = sum(len(decode(d["x"])) for d in spec["data"] if d["mode"] == "markers")
    assert n <= 2 * 3200
    solid = [d for d in spec["data"] if d["mode"] == "markers" and d["marker"]["opacity"] == 1.0]
    assert decode(solid[0]["x"]).size == 80  # the highlighted second at full detail


def test_hear_figure_rows_on_the_clip_time_axis():
    import plotly.graph_objects as go

    from vrnn.plots import hear_figure, vlines

    w = np.sin(np.linspace(0, 300, 32_000)).astype(np.float32)
    fig = hear_figure(w, reconstruction=0.5 * w, continuation=np.zeros(16_000, np.float32), at=1.5,
                      shapes=vlines([1.5]))
    spec = as_json(go.Figure(fig.to_dict()))
    assert spec["layout"]["meta"]["rows"] == ["reconstruction", "continuation"]
    assert spec["layout"]["xaxis2"]["range"] == [0.0, 2.5]  # the continuation runs past the clip's end
    cont = [d for d in spec["data"] if d["name"] == "continuation"]
    assert decode(cont[0]["x"]).min() >= 1.5
    assert len(spec["layout"]["shapes"]) == 2
    only = as_json(hear_figure(w, reconstruction=w))
    assert only["layout"]["meta"]["rows"] == ["reconstruction"]


@pytest.mark.parametrize("latent", [True, False])
def test_show_rows_lays_out_any_rows_as_figure2_does(latent):
    """figure2(row_layouts=True) holds every row; show_rows (and the app's graph, which does the same in the
    browser) shows some of the optional rows exactly as figure2 lays out just those: height, margins, each row's
    domain and title, colour bars, the time axis on the bottom row, and the rows' own traces and shapes."""
    import itertools

    import plotly.graph_objects as go

    from vrnn.plots import OPTIONAL_ROWS, show_rows, vlines

    a = synthetic_analysis(2.0, z_dim=5, latent=latent)
    kw = dict(select=True, row_px=120, shapes={"kl": vlines([0.5]), "wave": vlines([1.0])})
    full = figure2(a, spectrogram=True, kl_heatmap=True, means=True, row_layouts=True, **kw)
    every = full.layout.meta["rows"]
    optional = [r for r in OPTIONAL_ROWS if r in every]
    assert optional == (list(OPTIONAL_ROWS) if latent else ["mel"])
    assert all(full.layout[f"xaxis{i}"].matches == "x" for i in range(2, len(every) + 1))
    for n in range(len(optional) + 1):
        for shown in itertools.combinations(optional, n):
            got = as_json(go.Figure(show_rows(full, shown).to_dict()))  # and a valid figure
            ref = as_json(figure2(a, spectrogram="mel" in shown, kl_heatmap="kl_dims" in shown,
                                  means="means" in shown, **kw))
            g, r = got["layout"], ref["layout"]
            assert g["meta"]["rows"] == r["meta"]["rows"]
            for k in ("height", "margin", "legend", "showlegend"):
                assert g[k] == r[k], (shown, k)
            assert [x["text"] for x in g["annotations"]] == [x["text"] for x in r["annotations"]]
            assert [x["y"] for x in g["annotations"]] == pytest.approx([x["y"] for x in r["annotations"]])
            for i, row in enumerate(r["meta"]["rows"], start=1):  # the shown row's axes are those of its place in full
                j = every.index(row) + 1
                gy, gx = (g[f"{k}axis{'' if j == 1 else j}"] for k in "yx")
                ry, rx = (r[f"{k}axis{'' if i == 1 else i}"] for k in "yx")
                assert gy["domain"] == pytest.approx(ry["domain"]), (shown, row)
                assert gx.get("showticklabels") == rx.get("showticklabels"), (shown, row)
                assert gx.get("title", {}).get("text") == rx.get("title", {}).get("text")
            assert [t.get("name") for t in got["data"]] == [t.get("name") for t in ref["data"]]
            assert [t["colorbar"]["y"] for t in got["data"] if t["type"] == "heatmap"] == pytest.approx(
                [t["colorbar"]["y"] for t in ref["data"] if t["type"] == "heatmap"])
            assert [s["x0"] for s in g["shapes"]] == [s["x0"] for s in r["shapes"]]

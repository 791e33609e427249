"""Reference boundaries and detected peaks drawn onto Figure 2 (plotly), and a clip's score table.

    fig = figure2(a, spectrogram=True)
    add_reference(fig, ref)                                   # every row: a line per boundary, phone labels on top
    scores, peaks = score_analysis(a, ref, tolerance=0.02)    # vrnn.segmentation rows for this clip
    add_peaks(fig, a, peaks)                                  # detected boundaries on the delta and KL rows

Lines are drawn as one scatter trace per row (None-separated segments spanning the row's data range), labels
as one text trace per row: a 30 s clip with ~400 boundaries adds a handful of traces, not hundreds of shapes.
No Streamlit here; the app's pages call these.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .boundaries import TOLERANCE, PeakPicking, frame_seconds
from .segmentation import ClipSignals, baseline_signals, detections, evaluate_clips, picking_rule
from .segments import Reference, is_silence

REF_COLOR = "rgba(22, 163, 74, 0.75)"  # green: reference boundaries
PEAK_COLORS = {"delta": "#1e3a8a", "kl": "#7c2d12", "kl_dims": "#581c87"}


def _row_axes(fig: go.Figure) -> dict[str, tuple[float, float]]:
    """{y axis name ('y', 'y2', ...): (low, high) of the data drawn against it} for every row with data."""
    spans: dict[str, list[float]] = {}
    for tr in fig.data:
        ax = tr.yaxis or "y"
        if tr.type == "heatmap":
            n = len(tr.z) if tr.z is not None else 1
            lo, hi = -0.5, n - 0.5
        elif tr.y is not None and len(tr.y):
            y = np.asarray(tr.y, dtype=np.float64)
            y = y[np.isfinite(y)]
            if not len(y):
                continue
            lo, hi = float(y.min()), float(y.max())
        else:
            continue
        s = spans.setdefault(ax, [lo, hi])
        s[0], s[1] = min(s[0], lo), max(s[1], hi)
    return {k: (v[0], v[1] if v[1] > v[0] else v[0] + 1.0) for k, v in spans.items()}


def _xaxis_of(fig: go.Figure, yaxis: str) -> str:
    for tr in fig.data:
        if (tr.yaxis or "y") == yaxis:
            return tr.xaxis or "x"
    return "x"


MAX_LABELS = 60  # phone labels drawn at most; more are unreadable on a screen-wide figure and slow to draw


def add_reference(fig: go.Figure, ref: Reference, time_range: tuple[float, float] | None = None,
                  labels: bool = True, lines: bool = True, max_labels: int = MAX_LABELS) -> go.Figure:
    """Draw `ref`'s boundaries as vertical lines on every row of `fig` and its phone labels at the top of every
    row, at each phone's middle (silence unlabelled). Returns `fig`.

    Two traces per row (lines, labels), built from numpy arrays: plotly validates each trace once, so a
    30 s clip with ~300 boundaries costs a few tens of ms. Labels are drawn only when at most `max_labels`
    phones fall in `time_range` (zoom in to see them): SVG text is what costs the browser time (a 30 s clip's
    ~1200 labels on four rows added seconds to the drawing in headless Chromium; the lines little)."""
    t_all = ref.boundaries()
    lo_t, hi_t = time_range or (0.0, ref.duration)
    t_all = t_all[(t_all >= lo_t) & (t_all <= hi_t)].astype(np.float32)
    phones = [s for s in ref.phones if not is_silence(s.label) and s.end >= lo_t and s.start <= hi_t]
    mids = np.array([(s.start + s.end) / 2 for s in phones], np.float32)
    text = np.array([s.label for s in phones], dtype=object)
    x = np.repeat(t_all, 3)
    x[2::3] = np.nan
    for yaxis, (lo, hi) in _row_axes(fig).items():
        xaxis = _xaxis_of(fig, yaxis)
        if lines and len(t_all):
            y = np.tile(np.array([lo, hi, np.nan], np.float32), len(t_all))
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color=REF_COLOR, width=1), hoverinfo="skip",
                                     showlegend=False, name="reference boundaries", xaxis=xaxis, yaxis=yaxis))
        if labels and 0 < len(phones) <= max_labels:
            fig.add_trace(go.Scatter(x=mids, y=np.full(len(mids), hi, np.float32), mode="text", text=text,
                                     textposition="bottom center", textfont=dict(size=10, color="#166534"),
                                     hoverinfo="skip", showlegend=False, name="reference phones",
                                     xaxis=xaxis, yaxis=yaxis))
    return fig


def reference_shapes(ref: Reference, rows: list[str], time_range: tuple[float, float] | None = None,
                     color: str = REF_COLOR) -> dict[str, list[dict]]:
    """The reference boundaries as plain plotly line shapes per row ({row: [shape, ...]}, x in s, y0/y1 0..1 of
    the row's height): for a figure builder that takes shapes per row (no validation cost). Labels are not
    shapes: add them with `add_reference(fig, ref, lines=False)`."""
    lo_t, hi_t = time_range or (0.0, ref.duration)
    ts = [float(t) for t in ref.boundaries() if lo_t <= t <= hi_t]
    line = [dict(type="line", x0=t, x1=t, y0=0, y1=1, line=dict(color=color, width=1)) for t in ts]
    return {r: line for r in rows}


def add_peaks(fig: go.Figure, analysis, peaks: dict[str, np.ndarray]) -> go.Figure:
    """Mark detected boundaries (s) of the 'delta' and 'kl' signals on their rows of a Figure 2 (`layout.meta`
    names the rows), as triangles on the signal's value of the frame starting at that time (drawn at the frame's
    centre, where Figure 2 draws it; the hover gives the scored time, the frame's start)."""
    rows = list((fig.layout.meta or {}).get("rows", []))
    for name in ("delta", "kl"):
        if name not in rows or name not in peaks or not len(peaks[name]):
            continue
        i = rows.index(name) + 1
        values = getattr(analysis, name)
        idx = np.clip(np.round(np.asarray(peaks[name]) / frame_seconds(analysis)).astype(int), 0, len(values) - 1)
        # the signal's value of frame t sits at that frame's centre in Figure 2
        fig.add_trace(go.Scatter(x=analysis.times[idx].astype(np.float32), y=np.asarray(values)[idx].astype(np.float32),
                                 mode="markers", marker=dict(symbol="triangle-down", size=8, color=PEAK_COLORS[name]),
                                 name=f"{name} peaks", customdata=np.asarray(peaks[name], np.float32),
                                 hovertemplate="detected boundary at %{customdata:.4f} s<extra></extra>",
                                 showlegend=False, xaxis="x" if i == 1 else f"x{i}", yaxis="y" if i == 1 else f"y{i}"))
    return fig


def score_analysis(analysis, ref: Reference, tolerance: float = TOLERANCE, label: str = "model",
                   picking: PeakPicking | None = None, top_n: bool = False) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Score one analysed clip against its reference: the rows of `vrnn.segmentation.evaluate_clips` (this
    model's delta, KL_t, per-dimension KL and every baseline) and the detected boundary times per model signal.

    picking: one PeakPicking for every signal; default: each signal's tuned setting (or top-N with `top_n`).
    The reference is cropped to the analysed audio (trailing samples past the last whole frame are dropped).
    """
    from .boundaries import model_signals

    duration = len(analysis.waveform) / analysis.sample_rate
    ref = ref.crop(duration) if ref.duration > duration else ref
    rule = (lambda name: picking) if picking is not None else picking_rule(top_n=top_n)
    clip = ClipSignals("clip", ref, {"baseline": baseline_signals(analysis.waveform), label: model_signals(analysis)})
    rows = evaluate_clips([clip], tolerance, rule)
    peaks = {name: detections(clip, label, name, rule(name)) for name in clip.signals[label]}
    for r in rows:
        r.pop("per_clip", None)
    return rows, peaks


def score_records(rows: list[dict]) -> list[dict]:
    """Flat records for a table widget: source, signal, P, R, F1, R-value, OS (all boundaries) and p2p F1, R-value."""
    out = []
    for r in rows:
        a, p = r["all"], r["p2p"]
        out.append({"source": r["source"], "signal": r["signal"], "precision": round(a["precision"], 3),
                    "recall": round(a["recall"], 3), "F1": round(a["f1"], 3), "R-value": round(a["r_value"], 3),
                    "over-segmentation": round(a["over_segmentation"], 3), "p2p F1": round(p["f1"], 3),
                    "p2p R-value": round(p["r_value"], 3), "detections": a["n_est"], "references": a["n_ref"]})
    return out


def compare_records(analyses: dict, ref: Reference, tolerance: float = TOLERANCE, top_n: bool = False) -> list[dict]:
    """For the Compare page: one record per checkpoint (name -> Analysis; RNN models get none) with F1 and
    R-value of its delta_t, KL_t and per-dimension KL change, then one per baseline (computed once)."""
    out, baselines = [], None
    for name, a in analyses.items():
        if not a.has_latent:
            continue
        rows, _ = score_analysis(a, ref, tolerance, label=name, top_n=top_n)
        rec = {"checkpoint": name}
        for r in rows:
            if r["source"] == name:
                rec[f"{r['signal']} F1"] = round(r["all"]["f1"], 3)
                rec[f"{r['signal']} R-value"] = round(r["all"]["r_value"], 3)
        out.append(rec)
        if baselines is None:
            baselines = [{"checkpoint": f"baseline: {r['signal']}", "F1": round(r["all"]["f1"], 3),
                          "R-value": round(r["all"]["r_value"], 3)} for r in rows if r["source"] == "baseline"]
    return out + (baselines or [])

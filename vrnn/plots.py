"""Plotly figures shared by the app and the CLI: Figure 2 and Figure 3 of Chung et al. 2015, training curves.

    fig = figure2(analyze(model, waveform))        # delta_t, KL_t, waveform on one time axis (s)
    fig.write_html("figure2.html")

Everything is drawn with plain SVG traces (`go.Scatter`, `go.Heatmap`), never WebGL, so figures render in
any browser, headless ones included. Long series are drawn as a min/max envelope of at most `max_points`
points per trace: every peak survives, and a 10-minute clip stays a light figure.
No Streamlit here: the app and `python -m vrnn analyze --html` call the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .analysis import Analysis
from .audio import FRAME_SECONDS, FRAME_SIZE, SAMPLE_RATE, resample

COLORS = {"delta": "#1f5fa8", "kl": "#c2410c", "wave": "#3f3f46", "log_px": "#15803d",
          "prior": "#7c3aed", "posterior": "#0891b2"}
SERIES_COLORS = ("#1f5fa8", "#c2410c", "#15803d", "#7c3aed", "#be185d", "#0891b2")
# Magma, with its first stop (#000004) nudged: Streamlit's plotly component repaints that exact colour
# (silence then showed as lavender in the spectrogram).
MAGMA = [[0.0, "#0a0a1e"], [1 / 9, "#180f3d"], [2 / 9, "#440f76"], [3 / 9, "#721f81"], [4 / 9, "#9e2f7f"],
         [5 / 9, "#cd4071"], [6 / 9, "#f1605d"], [7 / 9, "#fd9668"], [8 / 9, "#feca8d"], [1.0, "#fcfdbf"]]
ROW_HEIGHT = 170  # px per row
N_MELS = 64  # mel bands of the spectrogram row

ROW_TITLES = {
    "delta": "δ<sub>t</sub> = Σ<sub>j</sub> (μ<sub>z,t</sub><sup>j</sup> − μ<sub>z,t−1</sub><sup>j</sup>)²"
             " · change of the posterior mean",
    "kl": "KL<sub>t</sub> = KL(q(z<sub>t</sub> | x<sub>≤t</sub>) ‖ p(z<sub>t</sub> | x<sub>&lt;t</sub>)) · nats",
    "log_px": "log p(x<sub>t</sub> | h<sub>t−1</sub>) · nats per frame",
    "wave": "waveform",
    "mel": "log-mel spectrogram (dB)",
    "kl_dims": "KL<sub>t</sub> per latent dimension (nats)",
    "means": "prior μ<sub>0,t</sub> (dashed) and posterior μ<sub>z,t</sub> (solid), most active dimensions",
}
Y_TITLES = {"delta": "δ<sub>t</sub>", "kl": "KL<sub>t</sub> (nats)", "log_px": "log p (nats)", "wave": "amplitude",
            "mel": "mel band", "kl_dims": "dimension", "means": "z"}


# -- data reduction ---------------------------------------------------------------------------------------------

def envelope(t: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Min/max envelope of a long series, or None when it already has at most `max_points` points.

    t, y: [N]. Returns (t_bin [M], y_min [M], y_max [M]) with M = max_points // 2 bins of (nearly) equal
    length, t_bin the centre of each bin, so the two envelope lines together hold at most `max_points`
    points. Every sample lies inside its bin's [y_min, y_max]: peaks are never lost.
    """
    n = len(y)
    if n <= max_points:
        return None
    m = max(1, max_points // 2)
    starts = np.linspace(0, n, m + 1).astype(np.int64)[:-1]  # first sample of each bin
    y_min = np.minimum.reduceat(y, starts)
    y_max = np.maximum.reduceat(y, starts)
    ends = np.append(starts[1:], n) - 1
    return 0.5 * (t[starts] + t[ends]), y_min, y_max


def _crop(t: np.ndarray, time_range: tuple[float, float] | None) -> slice:
    """Index slice of the sorted times `t` that falls inside `time_range` (s); everything when None."""
    if time_range is None:
        return slice(0, len(t))
    i0, i1 = np.searchsorted(t, [time_range[0], time_range[1]], side="left")
    i1 = max(int(i1), int(i0) + 1)  # never empty
    return slice(int(i0), min(i1, len(t)))


def _bin_columns(t: np.ndarray, m: np.ndarray, max_cols: int, reduce: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Reduce the time axis of an image m [R, T] to at most `max_cols` columns (mean or max per bin)."""
    n = m.shape[1]
    if n <= max_cols:
        return t, m
    starts = np.linspace(0, n, max_cols + 1).astype(np.int64)[:-1]
    if reduce == "max":
        cols = np.maximum.reduceat(m, starts, axis=1)
    else:
        counts = np.diff(np.append(starts, n))
        cols = np.add.reduceat(m, starts, axis=1) / counts
    ends = np.append(starts[1:], n) - 1
    return 0.5 * (t[starts] + t[ends]), cols


def log_mel(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS) -> np.ndarray:
    """Log-mel spectrogram aligned with the model's frames: [n_mels, T] dB (0 dB = the clip's loudest bin).

    waveform: mono [N] at `sample_rate` Hz, any rate (resampled to 16 kHz first; see `vrnn.audio`).
    STFT window 400 samples (25 ms), hop 200 samples (12.5 ms, one model frame) at 16 kHz, centred, so
    column t is centred near frame t's centre. Source: librosa.feature.melspectrogram, librosa.power_to_db.
    librosa is imported here, not at module level, so an app that never shows the row never pays for it.
    """
    import librosa

    s = librosa.feature.melspectrogram(y=resample(waveform, sample_rate), sr=SAMPLE_RATE,
                                       n_fft=2 * FRAME_SIZE, hop_length=FRAME_SIZE, n_mels=n_mels, center=True)
    return librosa.power_to_db(s, ref=np.max, top_db=80.0).astype(np.float32)


# -- traces -----------------------------------------------------------------------------------------------------

def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)  # half the JSON payload of float64


def _line(fig: go.Figure, t: np.ndarray, y: np.ndarray, row: int, col: int, color: str, name: str,
          max_points: int, hover: str, dash: str | None = None, showlegend: bool = False,
          legendgroup: str | None = None) -> None:
    """A line, or its min/max envelope (two lines with the band between them filled) when long."""
    env = envelope(t, y, max_points)
    line = dict(color=color, width=1, dash=dash)
    if env is None:
        fig.add_trace(go.Scatter(x=_f32(t), y=_f32(y), mode="lines", line=line, name=name, hovertemplate=hover,
                                 showlegend=showlegend, legendgroup=legendgroup), row=row, col=col)
        return
    tb, lo, hi = env
    fig.add_trace(go.Scatter(x=_f32(tb), y=_f32(hi), mode="lines", line=line, name=f"{name} (max)",
                             hovertemplate=hover, showlegend=False, legendgroup=legendgroup), row=row, col=col)
    fig.add_trace(go.Scatter(x=_f32(tb), y=_f32(lo), mode="lines", line=line, name=name, fill="tonexty",
                             fillcolor=color, hovertemplate=hover, showlegend=showlegend,
                             legendgroup=legendgroup), row=row, col=col)


def _waveform(fig: go.Figure, waveform: np.ndarray, sample_rate: int, sl: slice | None, row: int, col: int,
              max_points: int) -> None:
    t = np.arange(len(waveform)) / sample_rate
    if sl is not None:
        t, waveform = t[sl], waveform[sl]
    _line(fig, t, waveform, row, col, COLORS["wave"], "waveform", max_points, "%{x:.3f} s<br>%{y:.3f}<extra></extra>")


def _sample_slice(a: Analysis, time_range: tuple[float, float] | None) -> slice | None:
    if time_range is None:
        return None
    return slice(max(0, int(time_range[0] * a.sample_rate)), max(1, int(np.ceil(time_range[1] * a.sample_rate))))


def _most_active(a: Analysis, k: int) -> np.ndarray:
    """Indices of the k latent dimensions with the largest total KL over the clip (most informative first)."""
    return np.argsort(-a.kl_per_dim.sum(axis=0))[:k]


def _colorbar(fig: go.Figure, row: int, title: str) -> dict:
    dom = fig.layout[f"yaxis{'' if row == 1 else row}"].domain
    return dict(title=dict(text=title, side="right"), y=(dom[0] + dom[1]) / 2, len=dom[1] - dom[0],
                thickness=12, x=1.01)


# -- figures ----------------------------------------------------------------------------------------------------

def figure2(analysis: Analysis, title: str | None = None, max_points: int = 4000, *,
            spectrogram: bool | np.ndarray = False, kl_heatmap: bool = False, means: bool = False,
            n_dims: int = 3, time_range: tuple[float, float] | None = None,
            y_ranges: Mapping[str, tuple[float, float]] | None = None) -> go.Figure:
    """Figure 2 of Chung et al. 2015 for one clip: rows on one shared time axis in seconds.

    VRNN models: delta_t (top), KL_t in nats (middle), the waveform (bottom). RNN models have no latent
    variable, so they get log p(x_t | h_{t-1}) per frame above the waveform instead.
    Optional rows below, off by default: `spectrogram` (True to compute with `log_mel`, or a precomputed
    [n_mels, T] dB array), `kl_heatmap` (KL per latent dimension over time), `means` (prior and posterior
    means of the `n_dims` dimensions with the most KL). Latent-only rows are skipped for RNN models.

    Args:
        analysis: from `vrnn.analyze`.
        max_points: longest series drawn as is; longer ones become min/max envelopes of that many points
            (heatmaps get at most max_points // 2 columns).
        time_range: (start, end) s to show; data outside is dropped before reduction, so a zoomed view
            of a long clip gets full detail.
        y_ranges: fixed y ranges by row name ("delta", "kl", "log_px", "wave"), e.g. to share scales.
    Returns a plotly Figure with `layout.meta["rows"]` naming the rows top to bottom.
    """
    a = analysis
    rows = ["delta", "kl", "wave"] if a.has_latent else ["log_px", "wave"]
    if spectrogram is not False and spectrogram is not None:
        rows.append("mel")
    if a.has_latent and kl_heatmap:
        rows.append("kl_dims")
    if a.has_latent and means:
        rows.append("means")
    heights = [1.4 if r in ("mel", "kl_dims", "means") else 1.0 for r in rows]
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.3 / (len(rows) + 3),
                        subplot_titles=[ROW_TITLES[r] for r in rows], row_heights=heights)
    sl = _crop(a.times, time_range)
    t = a.times[sl]
    hover = "%{x:.3f} s<br>%{y:.4g}<extra></extra>"
    for i, r in enumerate(rows, start=1):
        if r == "delta":
            _line(fig, t, a.delta[sl], i, 1, COLORS["delta"], "δ_t", max_points, hover)
        elif r == "kl":
            _line(fig, t, a.kl[sl], i, 1, COLORS["kl"], "KL_t", max_points, hover)
        elif r == "log_px":
            _line(fig, t, a.log_px[sl], i, 1, COLORS["log_px"], "log p(x_t)", max_points, hover)
        elif r == "wave":
            _waveform(fig, a.waveform, a.sample_rate, _sample_slice(a, time_range), i, 1, max_points)
        elif r == "mel":
            mel = log_mel(a.waveform, a.sample_rate) if isinstance(spectrogram, bool) else np.asarray(spectrogram)
            mel = mel[:, :a.n_frames]  # centred STFT has one extra column
            tm, mel = _bin_columns(a.times[:mel.shape[1]][sl], mel[:, sl], max_points // 2, "mean")
            fig.add_trace(go.Heatmap(x=_f32(tm), z=_f32(mel), colorscale=MAGMA, zmin=-80, zmax=0,
                                     colorbar=_colorbar(fig, i, "dB"),
                                     hovertemplate="%{x:.3f} s<br>band %{y}<br>%{z:.1f} dB<extra></extra>"),
                          row=i, col=1)
        elif r == "kl_dims":
            tk, kd = _bin_columns(t, a.kl_per_dim[sl].T, max_points // 2, "max")  # [Z, T']
            fig.add_trace(go.Heatmap(x=_f32(tk), z=_f32(kd), colorscale="Viridis", zmin=0,
                                     colorbar=_colorbar(fig, i, "nats"),
                                     hovertemplate="%{x:.3f} s<br>z<sub>%{y}</sub><br>%{z:.3g} nats<extra></extra>"),
                          row=i, col=1)
        elif r == "means":
            for k, j in enumerate(_most_active(a, n_dims)):
                c = SERIES_COLORS[k % len(SERIES_COLORS)]
                _line(fig, t, a.prior_mean[sl, j], i, 1, c, f"prior z{j}", max_points, hover, dash="dot",
                      showlegend=True, legendgroup=f"z{j}")
                _line(fig, t, a.z_mean[sl, j], i, 1, c, f"posterior z{j}", max_points, hover, showlegend=True,
                      legendgroup=f"z{j}")
        fig.update_yaxes(title_text=Y_TITLES[r], row=i, col=1)
        if y_ranges and r in y_ranges:
            fig.update_yaxes(range=list(y_ranges[r]), row=i, col=1)
    fig.update_xaxes(title_text="time (s)", row=len(rows), col=1)
    x_range = time_range or (0.0, a.n_frames * FRAME_SECONDS)
    fig.update_xaxes(range=list(x_range))
    fig.update_layout(height=ROW_HEIGHT * sum(heights) + 110, meta={"rows": rows}, hovermode="x",
                      showlegend="means" in rows, template="plotly_white",
                      margin=dict(l=70, r=30, t=60 if title else 30, b=45),
                      legend=dict(orientation="h", yanchor="top", y=-60 / (ROW_HEIGHT * sum(heights))))
    fig.update_annotations(font_size=12)
    if title:
        fig.update_layout(title=dict(text=title, x=0.01))
    return fig


def compare_figure(analyses: Mapping[str, Analysis], max_points: int = 2000,
                   time_range: tuple[float, float] | None = None) -> go.Figure:
    """Figure 2 rows of several models side by side for one clip: one column per model.

    All columns share one time axis (s) and each row one y scale, so delta_t and KL_t compare at a glance.
    Rows: delta_t, KL_t, waveform; a column of an RNN model shows log p(x_t) in the KL row and leaves the
    delta row empty. `layout.meta["columns"]` lists the names in order.
    """
    names = list(analyses)
    fig = make_subplots(rows=3, cols=len(names), shared_xaxes="all", shared_yaxes="rows",
                        column_titles=names, row_titles=["δ<sub>t</sub>", "KL<sub>t</sub> (nats)", "waveform"],
                        horizontal_spacing=0.02, vertical_spacing=0.05)
    hover = "%{x:.3f} s<br>%{y:.4g}<extra></extra>"
    for c, name in enumerate(names, start=1):
        a = analyses[name]
        sl = _crop(a.times, time_range)
        t = a.times[sl]
        if a.has_latent:
            _line(fig, t, a.delta[sl], 1, c, COLORS["delta"], f"δ_t {name}", max_points, hover)
            _line(fig, t, a.kl[sl], 2, c, COLORS["kl"], f"KL_t {name}", max_points, hover)
        else:
            for r in (1, 2):  # an invisible trace so that plotly draws the empty cell and places the note
                fig.add_trace(go.Scatter(x=[t[0], t[-1]], y=[0, 0], mode="lines", line=dict(width=0),
                                         hoverinfo="skip"), row=r, col=c)
                fig.add_annotation(text="no latent variable (RNN model)", xref="x domain", yref="y domain",
                                   x=0.5, y=0.5, showarrow=False, font=dict(color="#71717a"), row=r, col=c)
        _waveform(fig, a.waveform, a.sample_rate, _sample_slice(a, time_range), 3, c, max_points)
        fig.update_xaxes(title_text="time (s)", row=3, col=c)
    # One scale per row across all columns (computed over the shown time range).
    def top(key: str) -> float:
        vals = [float(np.max(getattr(a, key)[_crop(a.times, time_range)])) for a in analyses.values() if a.has_latent]
        return 1.05 * max(vals + [1e-6])

    peak = 1.05 * max(float(np.max(np.abs(a.waveform[_sample_slice(a, time_range) or slice(None)])))
                      for a in analyses.values())
    for c in range(1, len(names) + 1):
        fig.update_yaxes(range=[0, top("delta")], row=1, col=c)
        fig.update_yaxes(range=[0, top("kl")], row=2, col=c)
        fig.update_yaxes(range=[-max(peak, 1e-3), max(peak, 1e-3)], row=3, col=c)
    x_end = max(a.n_frames for a in analyses.values()) * FRAME_SECONDS
    fig.update_xaxes(range=list(time_range or (0.0, x_end)))
    fig.update_layout(height=ROW_HEIGHT * 3 + 120, showlegend=False, hovermode="x", template="plotly_white",
                      margin=dict(l=60, r=80, t=50, b=45), meta={"columns": names})
    return fig


def figure3(waveforms: Mapping[str, np.ndarray], sample_rate: int = SAMPLE_RATE, max_points: int = 4000,
            title: str | None = None) -> go.Figure:
    """Generated samples as in Chung et al. 2015, Figure 3: one waveform per row, shared time axis (s)
    and one amplitude scale, so loudness compares too. waveforms: name -> float [N]."""
    names = list(waveforms)
    fig = make_subplots(rows=max(1, len(names)), cols=1, shared_xaxes=True, subplot_titles=names,
                        vertical_spacing=0.25 / max(1, len(names)))
    peak = max([float(np.abs(w).max()) for w in waveforms.values() if len(w)] + [1e-3])
    for i, name in enumerate(names, start=1):
        _waveform(fig, np.asarray(waveforms[name], dtype=np.float32), sample_rate, None, i, 1, max_points)
        fig.update_yaxes(range=[-1.05 * peak, 1.05 * peak], title_text="amplitude", row=i, col=1)
    fig.update_xaxes(title_text="time (s)", row=max(1, len(names)), col=1)
    fig.update_layout(height=130 * max(1, len(names)) + 90, showlegend=False, template="plotly_white",
                      margin=dict(l=70, r=20, t=60 if title else 30, b=45), meta={"rows": names})
    if title:
        fig.update_layout(title=dict(text=title, x=0.01))
    return fig


def training_curves(metrics_rows: Sequence[Mapping] | Mapping[str, Sequence[Mapping]]) -> go.Figure:
    """Training curves from `metrics.jsonl` rows (one run as a list, or several as name -> list).

    Top: ELBO per 12.5 ms frame (nats) against the optimiser step, training batches as a thin line and the
    validation ELBO after each epoch as markers. Bottom: the mean KL_t per frame of the training batches.
    """
    runs = dict(metrics_rows) if isinstance(metrics_rows, Mapping) else {"": list(metrics_rows)}
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["ELBO per frame (nats): training batches (line), validation (markers)",
                                        "KL<sub>t</sub> per frame (nats), training batches"])
    for k, (name, rows) in enumerate(runs.items()):
        c = SERIES_COLORS[k % len(SERIES_COLORS)]
        train = [r for r in rows if "train_elbo_per_frame" in r and r.get("finite", True)]
        valid = [r for r in rows if "valid_elbo_per_frame" in r]
        label = f"{name} " if name else ""
        fig.add_trace(go.Scatter(x=[r["step"] for r in train], y=[r["train_elbo_per_frame"] for r in train],
                                 mode="lines", line=dict(color=c, width=1), opacity=0.6, name=f"{label}train",
                                 legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=[r["step"] for r in valid], y=[r["valid_elbo_per_frame"] for r in valid],
                                 mode="lines+markers", line=dict(color=c, width=2), name=f"{label}valid",
                                 legendgroup=name), row=1, col=1)
        kl = [r for r in train if "kl_per_frame" in r]
        fig.add_trace(go.Scatter(x=[r["step"] for r in kl], y=[r["kl_per_frame"] for r in kl], mode="lines",
                                 line=dict(color=c, width=1), name=f"{label}KL", legendgroup=name,
                                 showlegend=False), row=2, col=1)
    fig.update_xaxes(title_text="optimiser step", row=2, col=1)
    fig.update_yaxes(title_text="nats / frame", row=1, col=1)
    fig.update_yaxes(title_text="nats / frame", row=2, col=1)
    fig.update_layout(height=520, template="plotly_white", margin=dict(l=70, r=20, t=40, b=45),
                      legend=dict(orientation="h", y=-0.15))
    return fig

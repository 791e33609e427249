"""Plotly figures shared by the app and the CLI: Figure 2 and Figure 3 of Chung et al. 2015, training curves.

    fig = figure2(analyze(model, waveform))        # delta_t, KL_t, waveform on one time axis (s)
    fig.write_html("figure2.html")

Everything is drawn with plain SVG traces (`go.Scatter`, `go.Heatmap`), never WebGL, so figures render in
any browser, headless ones included. Long series are drawn as a min/max envelope of at most `max_points`
points per trace: every peak survives, and a 10-minute clip stays a light figure.
No Streamlit here: the app and `python -m vrnn analyze --html` call the same functions.
"""

from __future__ import annotations

import itertools
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
    """Reduce the time axis of an image m [R, T] on evenly spaced times t [T] to at most `max_cols` columns of
    k = ceil(T / max_cols) frames each (mean or max per column; the last may hold fewer frames).

    Returns (x [C], cols [R, C]), x evenly spaced (the centre of a whole k-frame column, the last one's too,
    so a column is drawn over its own frames): plotly.js draws an evenly spaced heatmap as one scaled image,
    an unevenly spaced one brick by brick with fillRect (0.4-0.7 s instead of 0.15-0.25 s for the 64 x 500
    spectrogram of a 30 s clip in headless Chromium, loaded 2-core machine).
    """
    n = m.shape[1]
    if n <= max_cols:
        return t, m
    k = -(-n // max_cols)  # frames per column
    starts = np.arange(0, n, k)
    if reduce == "max":
        cols = np.maximum.reduceat(m, starts, axis=1)
    else:
        counts = np.diff(np.append(starts, n))
        cols = np.add.reduceat(m, starts, axis=1) / counts
    dt = (t[-1] - t[0]) / (n - 1)
    return t[0] + (starts + (k - 1) / 2) * dt, cols


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = 2 * FRAME_SIZE, n_mels: int = N_MELS) -> np.ndarray:
    """Triangular mel filters [n_mels, n_fft // 2 + 1], Slaney's mel scale and area normalisation: the same
    matrix as librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels) (tested equal), from 0 Hz to
    Nyquist. Written out because librosa's first call in a process took 4 s here (lazy imports)."""
    def hz_to_mel(f):  # Slaney: linear below 1 kHz (3 mel per 200 Hz), logarithmic above
        f = np.asarray(f, dtype=np.float64)
        logstep = np.log(6.4) / 27.0
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, 3.0 * f / 200.0)

    def mel_to_hz(m):
        logstep = np.log(6.4) / 27.0
        return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), 200.0 * m / 3.0)

    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:n_mels + 2] - mel_hz[:n_mels]))[:, None]  # equal area per filter
    return weights.astype(np.float32)


_MEL_CACHE: dict[tuple[int, int, int], np.ndarray] = {}


def log_mel(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS) -> np.ndarray:
    """Log-mel spectrogram aligned with the model's frames: [n_mels, T] dB (0 dB = the clip's loudest bin).

    waveform: mono [N] at `sample_rate` Hz, any rate (resampled to 16 kHz first; see `vrnn.audio`).
    STFT window 400 samples (25 ms, periodic Hann), hop 200 samples (12.5 ms, one model frame), centred
    with zero padding, so column t is centred near frame t's centre; power spectrum, `mel_filterbank`,
    10 log10 with an 80 dB floor below the maximum. The same numbers as librosa.feature.melspectrogram +
    librosa.power_to_db(ref=np.max, top_db=80) (tests/test_plots.py), in numpy: ~25 ms for 30 s, and no
    4-6 s first call.
    """
    n_fft, hop = 2 * FRAME_SIZE, FRAME_SIZE
    key = (SAMPLE_RATE, n_fft, n_mels)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = mel_filterbank(SAMPLE_RATE, n_fft, n_mels)
    y = np.pad(resample(waveform, sample_rate).reshape(-1), n_fft // 2)  # centred, zeros as librosa
    n_cols = 1 + (len(y) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop][:n_cols]  # [T, n_fft]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # [T, n_fft // 2 + 1]
    mel = _MEL_CACHE[key].astype(np.float64) @ power.T  # [n_mels, T]
    db = 10.0 * np.log10(np.maximum(mel, 1e-10) / max(float(mel.max(initial=0.0)), 1e-10))  # <= 0 dB
    return np.clip(db, max(float(db.max(initial=0.0)), -80.0) - 80.0, 0.0).astype(np.float32)


# -- traces -----------------------------------------------------------------------------------------------------

def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)  # half the JSON payload of float64


def line_traces(t: np.ndarray, y: np.ndarray, color: str, name: str, max_points: int, hover: str,
                dash: str | None = None, showlegend: bool = False, legendgroup: str | None = None,
                width: float = 1.0, opacity: float | None = None) -> list[dict]:
    """Scatter trace dicts (no axes set) for a line, or its min/max envelope (two lines with the band
    between them filled) when longer than `max_points`."""
    env = envelope(t, y, max_points)
    line = dict(color=color, width=width, dash=dash)
    common = dict(type="scatter", mode="lines", line=line, hovertemplate=hover, legendgroup=legendgroup)
    if opacity is not None:
        common["opacity"] = opacity
    if env is None:
        return [dict(common, x=_f32(t), y=_f32(y), name=name, showlegend=showlegend)]
    tb, lo, hi = env
    return [dict(common, x=_f32(tb), y=_f32(hi), name=f"{name} (max)", showlegend=False),
            dict(common, x=_f32(tb), y=_f32(lo), name=name, fill="tonexty", fillcolor=color, showlegend=showlegend)]


def _line(fig: go.Figure, t: np.ndarray, y: np.ndarray, row: int, col: int, color: str, name: str,
          max_points: int, hover: str, dash: str | None = None, showlegend: bool = False,
          legendgroup: str | None = None) -> None:
    """`line_traces` added to a make_subplots figure at (row, col)."""
    for tr in line_traces(t, y, color, name, max_points, hover, dash, showlegend, legendgroup):
        fig.add_trace(go.Scatter(**{k: v for k, v in tr.items() if k != "type"}), row=row, col=col)


WAVE_HOVER = "%{x:.3f} s<br>%{y:.3f}<extra></extra>"


def waveform_traces(waveform: np.ndarray, sample_rate: int, sl: slice | None, max_points: int,
                    color: str = COLORS["wave"], name: str = "waveform", offset_s: float = 0.0,
                    showlegend: bool = False, opacity: float | None = None) -> list[dict]:
    """A waveform [N] on a time axis in seconds (starting at `offset_s`), cropped to the sample slice `sl`."""
    t = offset_s + np.arange(len(waveform)) / sample_rate
    if sl is not None:
        t, waveform = t[sl], waveform[sl]
    return line_traces(t, waveform, color, name, max_points, WAVE_HOVER, showlegend=showlegend,
                       legendgroup=name if showlegend else None, opacity=opacity)


def _waveform(fig: go.Figure, waveform: np.ndarray, sample_rate: int, sl: slice | None, row: int, col: int,
              max_points: int) -> None:
    for tr in waveform_traces(waveform, sample_rate, sl, max_points):
        fig.add_trace(go.Scatter(**{k: v for k, v in tr.items() if k != "type"}), row=row, col=col)


def _sample_slice(a: Analysis, time_range: tuple[float, float] | None) -> slice | None:
    if time_range is None:
        return None
    return slice(max(0, int(time_range[0] * a.sample_rate)), max(1, int(np.ceil(time_range[1] * a.sample_rate))))


def _most_active(a: Analysis, k: int) -> np.ndarray:
    """Indices of the k latent dimensions with the largest total KL over the clip (most informative first)."""
    return np.argsort(-a.kl_per_dim.sum(axis=0))[:k]


# -- a grid of rows on one time axis, built as plain dicts ------------------------------------------------------

AXIS_STYLE = dict(gridcolor="#EBF0F8", linecolor="#EBF0F8", zerolinecolor="#EBF0F8", zerolinewidth=2, ticks="",
                  automargin=True)  # the look of plotly's "plotly_white" template, without its cost
LAYOUT_STYLE = dict(paper_bgcolor="white", plot_bgcolor="white", font=dict(color="#2a3f5f"),
                    hoverlabel=dict(align="left"))
ROW_GAP = 26  # px between rows, room for a row's title
# Margins (px) that plotly.js's automargin/autoexpand grows these figures to (headless Chromium, plotly's default
# font), preset: otherwise plotly.js draws a figure, finds its titles or colour bar outside the margins and draws
# it all again (Figure 2 took 110-300 ms to draw instead of 65-115 ms, the trajectory 400-570 ms instead of
# 200-360, loaded 2-core machine). A browser that needs more still gets it (the second drawing, as before).
TIME_AXIS_PX = 48  # bottom: the time axis's tick labels and its title "time (s)"
LEGEND_BELOW_PX = 100  # bottom: those and Figure 2's one-line legend below the means row (40 px below the plot)
COLORBAR_PX = 95  # right: a heatmap row's colour bar (-80..0 dB, or a KL bar in nats up to 0.05 or more) ...
COLORBAR_NARROW_TICKS_PX = 105  # ... or a KL bar below 0.05 nats, whose tick labels have three decimals
TRAJ_AXIS_PX = 46  # bottom of the 2-D trajectory: the tick labels and title "PC1 (12 %)"
TRAJ_COLORBAR_PX = 99  # right of the 2-D trajectory: its colour bar "time (s)" (up to 2-digit seconds)


def _axis(i: int, kind: str) -> str:
    """Layout key of the i-th (1-based) row's axis: 'xaxis', 'xaxis2', ... ('yaxis', ...)."""
    return f"{kind}axis" if i == 1 else f"{kind}axis{i}"


def _ref(i: int, kind: str) -> str:
    """Trace reference of the i-th row's axis: 'x', 'x2', ... ('y', ...)."""
    return kind if i == 1 else f"{kind}{i}"


def row_grid(titles: Sequence[str], heights_px: Sequence[float], x_range: tuple[float, float],
             top_px: float = 30, bottom_px: float = 45, matches_first: bool = False) -> dict:
    """Layout of stacked rows sharing one time axis: rows of `heights_px` plot pixels each, top to bottom, a
    title above each. Returns a layout dict (height, margins, x/y axes with domains, title annotations);
    the bottom row's x axis carries the ticks and 'time (s)', the others match it (or, with `matches_first`,
    every other row matches the first row's: rows below it can then be taken away)."""
    n = len(titles)
    height = float(sum(heights_px)) + ROW_GAP * (n - 1) + top_px + bottom_px
    plot_h = height - top_px - bottom_px
    layout: dict = dict(LAYOUT_STYLE, height=round(height), annotations=[], shapes=[],
                        margin=dict(l=70, r=30, t=top_px, b=max(bottom_px, TIME_AXIS_PX)))  # height as laid out
    match = 1 if matches_first else n
    y_top = 1.0
    for i, (title, h) in enumerate(zip(titles, heights_px, strict=True), start=1):
        y_bottom = y_top - h / plot_h
        layout[_axis(i, "y")] = dict(AXIS_STYLE, domain=[max(0.0, y_bottom), min(1.0, y_top)], anchor=_ref(i, "x"))
        layout[_axis(i, "x")] = dict(AXIS_STYLE, anchor=_ref(i, "y"), range=list(x_range), domain=[0.0, 1.0],
                                     showticklabels=i == n, **({"matches": _ref(match, "x")} if i != match else {}))
        layout["annotations"].append(dict(text=title, x=0.5, xref="paper", xanchor="center", y=y_top,
                                          yref="paper", yanchor="bottom", showarrow=False, font=dict(size=12)))
        y_top = y_bottom - ROW_GAP / plot_h
    layout[_axis(n, "x")]["title"] = dict(text="time (s)", standoff=8)
    return layout


def vlines(times: Sequence[float], color: str = "#52525b", width: float = 1.0, dash: str = "dot") -> list[dict]:
    """Vertical line shapes at `times` (s), each spanning its row's full height: for `figure2(shapes=...)`
    (reference phone boundaries, the continuation point)."""
    return [dict(type="line", x0=float(t), x1=float(t), y0=0, y1=1, line=dict(color=color, width=width, dash=dash))
            for t in times]


def add_row_shapes(fig: go.Figure, row: str, shapes: Sequence[dict]) -> go.Figure:
    """Add plotly shapes (x in seconds) to the named row of a `figure2` figure (`layout.meta["rows"]`);
    y0/y1 of 0/1 span the row (y measured in the row's domain). Rows not in the figure are ignored."""
    rows = list(fig.layout.meta["rows"])
    if row in rows:
        i = rows.index(row) + 1
        for sh in shapes:
            fig.add_shape(dict(sh, xref=_ref(i, "x"), yref=f"{_ref(i, 'y')} domain"))
    return fig


# -- figures ----------------------------------------------------------------------------------------------------

OPTIONAL_ROWS = ("mel", "kl_dims", "means")  # Figure 2's extra rows below the main ones, in this order


def figure2(analysis: Analysis, title: str | None = None, max_points: int = 2000, *,
            spectrogram: bool | np.ndarray = False, kl_heatmap: bool = False, means: bool = False,
            n_dims: int = 3, time_range: tuple[float, float] | None = None,
            y_ranges: Mapping[str, tuple[float, float]] | None = None,
            shapes: Mapping[str, Sequence[dict]] | None = None, row_px: float = ROW_HEIGHT,
            select: bool = False, max_cols: int = 500, row_layouts: bool = False) -> go.Figure:
    """Figure 2 of Chung et al. 2015 for one clip: rows on one shared time axis in seconds.

    VRNN models: delta_t (top), KL_t in nats (middle), the waveform (bottom). RNN models have no latent
    variable, so they get log p(x_t | h_{t-1}) per frame above the waveform instead.
    Optional rows below, off by default: `spectrogram` (True to compute with `log_mel`, or a precomputed
    [n_mels, T] dB array), `kl_heatmap` (KL per latent dimension over time), `means` (prior and posterior
    means of the `n_dims` dimensions with the most KL). Latent-only rows are skipped for RNN models.

    Args:
        analysis: from `vrnn.analyze`.
        max_points: longest series drawn as is; longer ones become min/max envelopes of that many points
            (the default, 1000 min/max pairs, is about one per pixel column of a full-width figure).
        max_cols: most columns of a heatmap row (mean, or max for KL, per column). A browser drew two
            heatmap rows of 1000 columns in 0.8-1.6 s and of 600 in 0.17-0.26 s (plotly.js, loaded machine).
        time_range: (start, end) s to show; data outside is dropped before reduction, so a zoomed view
            of a long clip gets full detail.
        y_ranges: fixed y ranges by row name ("delta", "kl", "log_px", "wave"), e.g. to share scales.
        shapes: row name -> plotly shapes in that row's coordinates (x in s; y0/y1 0..1 = the row's
            height), e.g. `vlines(boundaries)`; see also `add_row_shapes`.
        row_px: plot height of each of the main rows in px (extra rows get 1.4 times as much).
        select: drag selects a time stretch (plotly box select, for the app) instead of zooming.
        row_layouts: for a viewer that shows or hides the optional rows itself (the app's graph,
            components/plotly_graph): every x axis matches the first row's (which is always shown), and
            `layout.meta["row_layouts"]` holds, for each set of the optional rows present, what `figure2` with
            just those rows lays out differently (see `row_layout`), keyed by their names joined with "+"
            in `OPTIONAL_ROWS` order ("" for none).
    Returns a plotly Figure with `layout.meta["rows"]` naming the rows top to bottom. Built as plain
    dicts without plotly's validation (a 30 s clip in ~10 ms instead of ~400 ms); the test suite validates
    the result.
    """
    a = analysis
    rows = ["delta", "kl", "wave"] if a.has_latent else ["log_px", "wave"]
    if spectrogram is not False and spectrogram is not None:
        rows.append("mel")
    if a.has_latent and kl_heatmap:
        rows.append("kl_dims")
    if a.has_latent and means:
        rows.append("means")
    sl = _crop(a.times, time_range)
    t = a.times[sl]
    kd = None
    if "kl_dims" in rows:
        tk, kd = _bin_columns(t, a.kl_per_dim[sl].T, max_cols, "max")  # [Z, T']
    narrow = kd is not None and kd.size > 0 and float(np.nanmax(kd)) < 0.05  # KL bar ticks with three decimals

    def lay_out(shown: list[str]) -> dict:
        return _figure2_layout(shown, a.n_frames, title, time_range, row_px, select, narrow,
                               matches_first=row_layouts)

    layout = lay_out(rows)
    hover = "%{x:.3f} s<br>%{y:.4g}<extra></extra>"
    data: list[dict] = []
    for i, r in enumerate(rows, start=1):
        traces: list[dict] = []
        if r == "delta":
            traces = line_traces(t, a.delta[sl], COLORS["delta"], "δ_t", max_points, hover)
        elif r == "kl":
            traces = line_traces(t, a.kl[sl], COLORS["kl"], "KL_t", max_points, hover)
        elif r == "log_px":
            traces = line_traces(t, a.log_px[sl], COLORS["log_px"], "log p(x_t)", max_points, hover)
        elif r == "wave":
            traces = waveform_traces(a.waveform, a.sample_rate, _sample_slice(a, time_range), max_points)
        elif r == "mel":
            mel = log_mel(a.waveform, a.sample_rate) if isinstance(spectrogram, bool) else np.asarray(spectrogram)
            mel = mel[:, :a.n_frames]  # centred STFT has one extra column
            tm, mel = _bin_columns(a.times[:mel.shape[1]][sl], mel[:, sl], max_cols, "mean")
            traces = [dict(type="heatmap", x=_f32(tm), z=_f32(mel), colorscale=MAGMA, zmin=-80, zmax=0,
                           colorbar=dict(_colorbar(layout, i), title=dict(text="dB", side="right")),
                           hovertemplate="%{x:.3f} s<br>band %{y}<br>%{z:.1f} dB<extra></extra>")]
        elif r == "kl_dims":
            traces = [dict(type="heatmap", x=_f32(tk), z=_f32(kd), colorscale="Viridis", zmin=0,
                           colorbar=dict(_colorbar(layout, i), title=dict(text="nats", side="right")),
                           hovertemplate="%{x:.3f} s<br>z<sub>%{y}</sub><br>%{z:.3g} nats<extra></extra>")]
        elif r == "means":
            for k, j in enumerate(_most_active(a, n_dims)):
                c = SERIES_COLORS[k % len(SERIES_COLORS)]
                traces += line_traces(t, a.prior_mean[sl, j], c, f"prior z{j}", max_points, hover, dash="dot",
                                      showlegend=True, legendgroup=f"z{j}")
                traces += line_traces(t, a.z_mean[sl, j], c, f"posterior z{j}", max_points, hover,
                                      showlegend=True, legendgroup=f"z{j}")
        for tr in traces:
            tr.update(xaxis=_ref(i, "x"), yaxis=_ref(i, "y"))
        data += traces
        if y_ranges and r in y_ranges:
            layout[_axis(i, "y")]["range"] = list(y_ranges[r])
        for sh in (shapes or {}).get(r, ()):
            layout["shapes"].append(dict(sh, xref=_ref(i, "x"), yref=f"{_ref(i, 'y')} domain"))
    if row_layouts:
        base = [r for r in rows if r not in OPTIONAL_ROWS]
        present = [r for r in OPTIONAL_ROWS if r in rows]
        layout["meta"]["row_layouts"] = {
            "+".join(s): row_layout(lay_out(base + list(s)), base + list(s))
            for n in range(len(present) + 1) for s in itertools.combinations(present, n)}
    return go.Figure(data=data, layout=layout, _validate=False)


def _figure2_layout(rows: list[str], n_frames: int, title: str | None, time_range: tuple[float, float] | None,
                    row_px: float, select: bool, kl_narrow: bool, matches_first: bool = False) -> dict:
    """Figure 2's layout for these rows (no traces): the row grid, titles, margins, legend, drag mode."""
    heights = [row_px * (1.4 if r in OPTIONAL_ROWS else 1.0) for r in rows]
    x_range = tuple(time_range or (0.0, n_frames * FRAME_SECONDS))
    layout = row_grid([ROW_TITLES[r] for r in rows], heights, x_range, top_px=60 if title else 30,
                      bottom_px=LEGEND_BELOW_PX if "means" in rows else 45, matches_first=matches_first)
    for i, r in enumerate(rows, start=1):
        layout[_axis(i, "y")]["title"] = dict(text=Y_TITLES[r], standoff=8)
    if kl_narrow and "kl_dims" in rows:
        layout["margin"]["r"] = COLORBAR_NARROW_TICKS_PX
    plot_h = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    layout.update(meta={"rows": list(rows)}, hovermode="x", showlegend="means" in rows,
                  legend=dict(orientation="h", yanchor="top", y=-40 / plot_h))
    if "mel" in rows or "kl_dims" in rows:
        layout["margin"]["r"] = max(layout["margin"]["r"], COLORBAR_PX)
    if select:  # drag = box select along time (the app's selection); a double click clears it
        layout.update(dragmode="select", selectdirection="h")
    if title:
        layout["title"] = dict(text=title, x=0.01)
    return layout


def _colorbar(layout: dict, i: int) -> dict:
    """Placement of the i-th row's colour bar beside that row (a heatmap's)."""
    dom = layout[_axis(i, "y")]["domain"]
    return dict(y=(dom[0] + dom[1]) / 2, len=dom[1] - dom[0], thickness=12, x=1.01)


def row_layout(layout: dict, rows: list[str]) -> dict:
    """What a Figure 2 `layout` (of `figure2` with these `rows`) lays out per shown row, keyed by row name, for a
    viewer that shows a subset of a figure's rows (`figure2(row_layouts=True)`): the figure's height, margins
    and legend; each row's y domain, title position and colour bar placement; and which row is at the bottom
    (it carries the time axis)."""
    return dict(height=layout["height"], margin=layout["margin"], legend=layout["legend"],
                showlegend=layout["showlegend"], bottom=rows[-1],
                domains={r: layout[_axis(i, "y")]["domain"] for i, r in enumerate(rows, start=1)},
                title_y={r: layout["annotations"][i - 1]["y"] for i, r in enumerate(rows, start=1)},
                colorbars={r: {k: v for k, v in _colorbar(layout, i).items() if k in ("y", "len")}
                           for i, r in enumerate(rows, start=1) if r in ("mel", "kl_dims")})


def show_rows(fig: go.Figure | Mapping, shown: Sequence[str]) -> go.Figure:
    """A `figure2(row_layouts=True)` figure with only the optional rows in `shown` (and every main row), laid out
    as `figure2` lays out those rows: the other rows' traces, axes and shapes taken away. The app's graph
    (components/plotly_graph/index.html, `withRows`) does the same in the browser when a row is toggled.
    `fig` may be the figure's JSON as a dict. Raises KeyError for a figure without `layout.meta["row_layouts"]`."""
    d = fig if isinstance(fig, Mapping) else fig.to_plotly_json()
    layout, meta = d["layout"], d["layout"]["meta"]
    rl = meta["row_layouts"]["+".join(r for r in OPTIONAL_ROWS if r in shown)]
    index = {_ref(i, "y"): r for i, r in enumerate(meta["rows"], start=1)}  # 'y', 'y2', ... -> row name
    keep = lambda yref: index.get(str(yref or "y").split(" ")[0]) in rl["domains"]  # noqa: E731
    out = {k: v for k, v in layout.items() if not k.startswith(("xaxis", "yaxis"))}
    out.update(height=rl["height"], margin=rl["margin"], legend=rl["legend"], showlegend=rl["showlegend"],
               meta=dict(meta, rows=[r for r in meta["rows"] if r in rl["domains"]]),
               shapes=[sh for sh in layout.get("shapes", []) if keep(sh.get("yref"))])
    time_title = layout[_axis(len(meta["rows"]), "x")].get("title")
    for i, r in enumerate(meta["rows"], start=1):
        if r in rl["domains"]:
            out[_axis(i, "y")] = dict(layout[_axis(i, "y")], domain=rl["domains"][r])
            out[_axis(i, "x")] = {**{k: v for k, v in layout[_axis(i, "x")].items() if k != "title"},
                                  "showticklabels": r == rl["bottom"], **({"title": time_title} if r == rl["bottom"] else {})}
    titles = layout.get("annotations", [])[:len(meta["rows"])]
    out["annotations"] = [dict(a, y=rl["title_y"][r]) for a, r in zip(titles, meta["rows"], strict=True)
                          if r in rl["domains"]] + layout.get("annotations", [])[len(meta["rows"]):]
    data = []
    for tr in d["data"]:
        if keep(tr.get("yaxis")):
            r = index[tr.get("yaxis", "y")]
            cb = rl.get("colorbars", {}).get(r)  # (an empty dict may not survive the figure's JSON)
            data.append(dict(tr, colorbar=dict(tr["colorbar"], **cb)) if cb else tr)
    return go.Figure(data=data, layout=out, _validate=False)


PHONE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#843c39", "#7b4173", "#3182bd")


def _stride(n: int, max_points: int, keep: slice | None = None) -> np.ndarray:
    """Indices of at most ~max_points of n points, evenly spaced; those in `keep` all kept when they fit."""
    idx = np.arange(n)
    if n <= max_points:
        return idx
    base = idx[:: int(np.ceil(n / max_points))]
    if keep is None:
        return base
    inner = idx[keep]
    if len(inner) > max_points // 2:
        inner = inner[:: int(np.ceil(len(inner) / (max_points // 2)))]
    return np.union1d(base, inner)


def trajectory_figure(posterior: np.ndarray, prior: np.ndarray | None, times: np.ndarray, *,
                      highlight: tuple[float, float] | None = None, labels: Sequence[str] | None = None,
                      axis_names: Sequence[str] = ("PC1", "PC2", "PC3"), title: str | None = None,
                      max_points: int = 400, height: int = 420) -> go.Figure:
    """The latent trajectory of one clip: posterior means mu_z,t (left) and prior means mu_0,t (right, same
    axes and scales) projected to 2-D or 3-D, one point per frame, joined in time order.

    Args:
        posterior, prior: [T, 2] or [T, 3] projected means (`vrnn.latent.Projection`); prior may be None.
        times: [T] frame centres (s). Points are coloured by time (colour bar in s) unless `labels` is given.
        highlight: (start, end) s: that stretch drawn solid, the rest faded.
        labels: [T] a label per frame (reference phones, `vrnn.latent.frame_labels`; '' = none): points
            coloured by label, one legend entry per label.
        max_points: longest path drawn point by point; longer ones are thinned evenly (the highlighted
            stretch kept in more detail: every frame of it up to max_points // 2). plotly.js drew the two 2-D
            panels of a 30 s clip (2400 frames) in 2.0-2.8 s with every frame and 0.8-1.2 s with 600 (headless
            Chromium, loaded 2-core machine); redrawing them for a new highlight took 100-280 ms at 800 points
            and 63-174 ms at 400 (issue 14, fourth session: every point is styled one by one).
    Returns a Figure with `layout.meta = {"dims": 2 or 3, "panels": [...], "highlight": [start, end] or None}`.
    Built as plain dicts without plotly's validation, like `figure2`.
    """
    dims = posterior.shape[1]
    panels = [("posterior means μ<sub>z,t</sub>", posterior)] + ([("prior means μ<sub>0,t</sub>", prior)]
                                                                   if prior is not None else [])
    sel = _crop(times, highlight) if highlight is not None else None
    keep = _stride(len(times), max_points, sel)
    t = times[keep]
    inside = np.ones(len(keep), bool) if sel is None else (keep >= sel.start) & (keep < sel.stop)
    both = np.concatenate([p for _, p in panels])
    lo, hi = both.min(0), both.max(0)
    pad = 0.05 * np.maximum(hi - lo, 1e-6)
    ranges = [[float(lo[d] - pad[d]), float(hi[d] + pad[d])] for d in range(dims)]
    data: list[dict] = []
    margin = dict(l=50, r=TRAJ_COLORBAR_PX if labels is None else 20, t=60 if title else 40,
                  b=TRAJ_AXIS_PX if dims == 2 else 40)  # preset to what plotly.js would grow them to
    layout: dict = dict(LAYOUT_STYLE, height=height, margin=margin,
                        annotations=[], showlegend=labels is not None, hovermode="closest",
                        meta={"dims": dims, "panels": [n for n, _ in panels],
                              "highlight": list(highlight) if highlight else None})
    n_pan = len(panels)
    for k, (name, pts) in enumerate(panels):
        x0, x1 = (k / n_pan + (0.02 if k else 0), (k + 1) / n_pan - (0.02 if k + 1 < n_pan else 0))
        p = pts[keep]
        xa, ya = _ref(k + 1, "x"), _ref(k + 1, "y")
        where = dict(scene=f"scene{k + 1}" if k else "scene") if dims == 3 else dict(xaxis=xa, yaxis=ya)
        kind = "scatter3d" if dims == 3 else "scatter"
        coords = dict(x=_f32(p[:, 0]), y=_f32(p[:, 1]), **({"z": _f32(p[:, 2])} if dims == 3 else {}))
        hover = "%{customdata:.3f} s" + (" · %{text}" if labels is not None else "") + "<extra></extra>"
        # the path in time order: a thin line under the points
        data.append(dict(type=kind, mode="lines", **coords, line=dict(color="#a1a1aa", width=1), hoverinfo="skip",
                         showlegend=False, opacity=0.35 if sel is not None else 0.6, **where))
        marker = dict(size=3 if dims == 3 else 4)
        if labels is None:
            groups = [("", np.ones(len(keep), bool))]
        else:
            lab = np.asarray([labels[i] for i in keep], dtype=object)
            groups = [(g, lab == g) for g in dict.fromkeys(lab.tolist())]
        for gi, (g, in_group) in enumerate(groups):
            for solid in ((True, False) if sel is not None else (True,)):
                m = in_group & (inside if solid else ~inside)
                if not m.any():
                    continue
                mk = dict(marker, opacity=1.0 if solid else 0.12)
                if labels is None:
                    mk.update(color=_f32(t[m]), colorscale="Viridis", cmin=float(times[0]), cmax=float(times[-1]),
                              showscale=k == 0 and solid,
                              colorbar=dict(title=dict(text="time (s)", side="right"), thickness=12, len=0.8))
                else:
                    mk["color"] = PHONE_COLORS[gi % len(PHONE_COLORS)] if g else "#d4d4d8"
                sub = {c: v[m] for c, v in coords.items()}
                extra = {"text": [g or "no label"] * int(m.sum())} if labels is not None else {}
                data.append(dict(type=kind, mode="markers", **sub, marker=mk, customdata=_f32(t[m]), **extra,
                                 hovertemplate=hover, name=g or "(no label)", legendgroup=g,
                                 showlegend=labels is not None and k == 0 and solid, **where))
        if dims == 3:
            layout["scene" if k == 0 else f"scene{k + 1}"] = dict(
                domain=dict(x=[x0, x1], y=[0, 1]), aspectmode="cube",
                **{f"{c}axis": dict(title=dict(text=axis_names[d]), range=ranges[d])
                   for d, c in enumerate("xyz")})
        else:
            layout[_axis(k + 1, "x")] = dict(AXIS_STYLE, domain=[x0, x1], anchor=ya, range=ranges[0],
                                             title=dict(text=axis_names[0], standoff=6))
            layout[_axis(k + 1, "y")] = dict(AXIS_STYLE, domain=[0, 1], anchor=xa, range=ranges[1],
                                             title=dict(text=axis_names[1], standoff=6))
        layout["annotations"].append(dict(text=name, x=(x0 + x1) / 2, xref="paper", xanchor="center", y=1.0,
                                          yref="paper", yanchor="bottom", showarrow=False, font=dict(size=12)))
    if title:
        layout["title"] = dict(text=title, x=0.01)
    return go.Figure(data=data, layout=layout, _validate=False)


def hear_figure(waveform: np.ndarray, reconstruction: np.ndarray | None = None,
                continuation: np.ndarray | None = None, at: float = 0.0, sample_rate: int = SAMPLE_RATE,
                time_range: tuple[float, float] | None = None, max_points: int = 2000, row_px: float = 110,
                shapes: Sequence[dict] = ()) -> go.Figure:
    """What the model hears, on Figure 2's time axis (s): the clip with the model's reconstruction over it
    (row "reconstruction"), and the clip up to `at` s followed by the model's continuation (row "continuation").

    waveform, reconstruction [N] and continuation [M] float at `sample_rate`; the continuation starts at `at`
    s. Rows without their audio are left out. `shapes` (e.g. `vlines`) go on every row. `layout.meta["rows"]`
    names the rows.
    """
    rows, titles = [], []
    if reconstruction is not None:
        rows.append("reconstruction")
        titles.append("clip (grey) and its reconstruction: the decoder's mean along the posterior-mean path")
    if continuation is not None:
        rows.append("continuation")
        titles.append(f"clip up to {at:.3f} s (grey), then the model's continuation sampled from the prior")
    end = len(waveform) / sample_rate
    if continuation is not None:
        end = max(end, at + len(continuation) / sample_rate)
    x_range = tuple(time_range) if time_range else (0.0, end)
    layout = row_grid(titles, [row_px] * len(rows), x_range, bottom_px=45)
    layout["showlegend"] = False
    data: list[dict] = []
    sl = None
    if time_range is not None:
        sl = slice(max(0, int(time_range[0] * sample_rate)), max(1, int(np.ceil(time_range[1] * sample_rate))))

    def crop_from(offset: float) -> slice | None:
        if time_range is None:
            return None
        return slice(max(0, int((time_range[0] - offset) * sample_rate)),
                     max(0, int(np.ceil((time_range[1] - offset) * sample_rate))))

    for i, r in enumerate(rows, start=1):
        if r == "reconstruction":
            tr = waveform_traces(np.asarray(waveform), sample_rate, sl, max_points, color="#a1a1aa", name="clip")
            tr += waveform_traces(np.asarray(reconstruction), sample_rate, sl, max_points, color=COLORS["posterior"],
                                  name="reconstruction", opacity=0.85)
        else:
            cut = np.asarray(waveform)[: int(round(at * sample_rate))]
            tr = waveform_traces(cut, sample_rate, sl, max_points, color="#a1a1aa", name="clip") if len(cut) else []
            part = crop_from(at)
            if part is None or part.stop > part.start:
                tr += waveform_traces(np.asarray(continuation), sample_rate, part, max_points, color=COLORS["prior"],
                                      name="continuation", offset_s=at)
        for t_ in tr:
            t_.update(xaxis=_ref(i, "x"), yaxis=_ref(i, "y"))
        data += tr
        layout[_axis(i, "y")]["title"] = dict(text="amplitude", standoff=8)
        for sh in shapes:
            layout["shapes"].append(dict(sh, xref=_ref(i, "x"), yref=f"{_ref(i, 'y')} domain"))
    layout["meta"] = {"rows": rows}
    layout["hovermode"] = "x"
    return go.Figure(data=data, layout=layout, _validate=False)


def compare_figure(analyses: Mapping[str, Analysis], max_points: int = 2000,
                   time_range: tuple[float, float] | None = None) -> go.Figure:
    """Figure 2 rows of several models side by side for one clip: one column per model.

    All columns share one time axis (s) and each row one y scale, so delta_t and KL_t compare at a glance.
    Rows: delta_t, KL_t, waveform; a column of an RNN model shows log p(x_t) in the KL row and leaves the
    delta row empty. `layout.meta["columns"]` lists the names in order.
    """
    names = list(analyses)
    fig = make_subplots(rows=3, cols=len(names), shared_xaxes="all", shared_yaxes="rows",
                        column_titles=names, horizontal_spacing=0.06, vertical_spacing=0.05)
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
    # Every column gets its own tick labels (one scale, so the same numbers) and the first its axis titles,
    # written horizontally-readable beside the ticks rather than as rotated row titles at the far right.
    for r, name in enumerate(("delta", "kl", "wave"), start=1):
        fig.update_yaxes(title_text=Y_TITLES[name], row=r, col=1)
    fig.update_yaxes(showticklabels=True, tickfont=dict(size=11))
    for c in range(1, len(names) + 1):
        fig.update_yaxes(range=[0, top("delta")], row=1, col=c)
        fig.update_yaxes(range=[0, top("kl")], row=2, col=c)
        fig.update_yaxes(range=[-max(peak, 1e-3), max(peak, 1e-3)], row=3, col=c)
    x_end = max(a.n_frames for a in analyses.values()) * FRAME_SECONDS
    fig.update_xaxes(range=list(time_range or (0.0, x_end)))
    fig.update_layout(height=ROW_HEIGHT * 3 + 120, showlegend=False, hovermode="x", template="plotly_white",
                      margin=dict(l=70, r=20, t=50, b=45), meta={"columns": names})
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

"""Home: Chung et al. 2015, Figure 2 for the chosen clip and checkpoint (delta_t, KL_t, waveform).

The model runs once per (checkpoint, clip); everything below it is an `st.fragment` that reruns alone when a
row is toggled, the view moves or a stretch is selected, from cached float32 arrays, a cached spectrogram and
cached WAV bytes: no model pass, no recomputation. Two fragments inside it rerun alone for their own controls:
the score table (the tolerance) and the latent trajectory (projection, dimensions). The view (slider) zooms
every row; a stretch dragged on any row of the figure (plotly box select) is the selection: it plays, and a double
click clears it. A selection belongs to the figure it was drawn on (a changed figure is drawn without the box).
Figure 2 and the trajectory are `ui.plotly_graph`s: graphs that stay mounted, take a changed figure with
Plotly.react, and draw one off the screen (the trajectory below the fold) only when it scrolls in. Figure 2 holds
every row; its graph shows the rows toggled on and follows a row toggle itself, without waiting for the rerun
(benchmarks/README.md, issue 14: interaction times on a quiet 2-core machine).
"""

import numpy as np
import streamlit as st

import ui
import vrnn
from vrnn.audio import FRAME_SECONDS
from vrnn.latent import frame_labels
from vrnn.plots import OPTIONAL_ROWS, figure2, hear_figure, trajectory_figure, vlines
from vrnn.segplots import add_peaks, add_reference

FIG_ROW_PX = 130  # plot height of each main row: the three rows fit a 1400 x 900 window with the controls
TRAJ_PX = 420  # height of the latent trajectory (trajectory_figure's default), held while it waits to be drawn
TRAJ_DRAWN = "_trajectory_drawn"  # session: the (checkpoint, clip) pairs whose trajectory has been drawn
WARM_AFTER = "_figure2_warm_after"  # session: the (checkpoint, clip) whose trajectory, once drawn, warms the other
PROJECTIONS = ("PCA of this clip", "Fixed for this checkpoint")  # the trajectory's projections

st.title("Figure 2")

ref = ui.selected_checkpoint()
model = ui.load_model(ref)
clip = ui.current_clip()
a = ui.analysis(ref, model, clip)

st.caption(f"**{ui.plain(clip.name)}** ({clip.seconds:.2f} s, {a.n_frames} frames of 12.5 ms) · checkpoint **{ui.plain(ref.label)}** "
           f"({model.config.family}, LSTM {model.config.h_dim}"
           + (f", latent {model.config.z_dim})" if model.config.has_latent else ")"))
if not a.has_latent:
    st.info(f"{ui.plain(ref.label)} is an RNN model ({model.config.family}) without latent variables, so it has no "
            "δ_t and KL_t rows; shown instead is the log-likelihood of each frame.")

duration = a.n_frames * FRAME_SECONDS
VIEW = f"zoom_{clip.digest[:16]}"  # the time range shown (s), one per clip: the slider
SEL = "selection"  # (the figure it was drawn on, (start, end) s): the stretch dragged on the figure
st.session_state.setdefault(VIEW, (0.0, duration))


def _figure_id() -> tuple:
    """What the drawn figure depends on: a selection belongs to the figure it was dragged on."""
    return (ref.key, clip.digest, st.session_state.get(VIEW), *(bool(st.session_state.get(k)) for k in ROW_KEYS),
            *(st.session_state.get(k) for k in SEG_KEYS))


def _from_selection() -> None:
    """on_select of the figure: a dragged box is the selection; an empty one (double click) clears it."""
    r = ui.selected_range(st.session_state.get("figure2"), duration)
    st.session_state[SEL] = (_figure_id(), r) if r else None


def selection() -> tuple[float, float] | None:
    """The dragged stretch (s) if it was dragged on the figure now shown, else None."""
    sel = st.session_state.get(SEL)
    return sel[1] if sel and sel[0] == _figure_id() else None


ROW_KEYS = ("row_mel", "row_kl_dims", "row_means")
SEG_KEYS = ("seg_picking", "seg_distance", "seg_prominence")  # move the detected peaks (the tolerance does not)


@st.fragment
def explore() -> None:
    """Rows, view, selection, audio and figure: reruns alone on any of its controls."""
    c1, c2, c3, c4 = st.columns([1, 1, 1, 3], vertical_alignment="bottom")
    show_mel = c1.toggle("Spectrogram", key="row_mel", help="Log-mel spectrogram (64 bands, dB) below the rows")
    show_kl = c2.toggle("KL per dim", key="row_kl_dims", disabled=not a.has_latent,
                        help="KL_t of each latent dimension over time, as a heatmap")
    show_means = c3.toggle("Means", key="row_means", disabled=not a.has_latent,
                           help="Prior and posterior means of the three dimensions with the most KL")
    time_range = None
    if a.n_frames > 4:
        lo, hi = c4.slider("View (s): zooms every row; drag on the figure to select a stretch within it", 0.0,
                           duration, step=FRAME_SECONDS, format="%.3f", key=VIEW)
        if hi - lo < FRAME_SECONDS:
            hi = min(duration, lo + FRAME_SECONDS)
        if (lo, hi) != (0.0, duration):
            time_range = (lo, hi)
    sel = selection()
    play = sel or time_range
    i0, i1 = (int(play[0] * a.sample_rate), int(play[1] * a.sample_rate)) if play else (0, None)
    p1, p2 = st.columns([2, 3], vertical_alignment="center")
    p1.audio(ui.wav_part(clip.digest, a.waveform, i0, i1), format="audio/wav")
    what = "the selection" if sel else "the view" if time_range else "the whole clip"
    p2.caption(f"Playing {what}" + (f", {play[0]:.3f}–{play[1]:.3f} s." if play else ".")
               + (" Double-click the figure to clear the selection." if sel else
                  " Drag across any row to select a stretch."))
    fig_box = st.container()  # the figure above its scoring controls, drawn once they are read
    peaks, seg_key = {}, None
    if cref is not None:
        tol_box, pick_boxes = ui.scoring_columns()
        picking = ui.picking_inputs(pick_boxes)
        table_box = st.container()
        if a.has_latent:  # the detected peaks depend on the picking, not on the tolerance
            peaks = ui.detected_peaks(ref, clip, a, cref, picking)
            seg_key = (cref.key, picking)
        else:
            seg_key = (cref.key,)

    def build():
        """Figure 2 with every row in the current view, the current reference and peaks; the graph shows the rows
        toggled on (`rows`) and follows the toggles itself, so a toggle sends no new figure (ui.plotly_graph)."""
        fig = figure2(a, spectrogram=ui.log_mel(clip.digest, a.waveform), kl_heatmap=True, means=True,
                      time_range=time_range, row_px=FIG_ROW_PX, select=True, row_layouts=True)
        if cref is not None:
            add_reference(fig, cref.ref, time_range=time_range)
            add_peaks(fig, a, peaks)
        return fig

    fig = ui.memo("figure2", (ref.key, clip.digest, time_range, seg_key), 32, build)
    shown = [r for r, on in zip(OPTIONAL_ROWS, (show_mel, show_kl, show_means), strict=True) if on]
    with fig_box:
        ui.plotly_graph(fig, key="figure2", on_select=_from_selection, rows=shown,
                        row_toggles=dict(zip(ROW_KEYS, OPTIONAL_ROWS, strict=True)))
    if cref is not None:
        score_table(tol_box, table_box, picking)
    if a.has_latent:
        trajectory(sel or time_range)


@st.fragment
def score_table(tol_box, table_box, picking: tuple) -> None:
    """The tolerance and the score table: reruns alone when the tolerance changes (the figure stays)."""
    tolerance = ui.tolerance_input(tol_box)
    with table_box:
        if not a.has_latent:
            st.caption(f"Reference: {ui.plain(cref.source)} (green lines). This RNN model has no latent signals to "
                       "score.")
            return
        table = ui.score_table(ref, clip, a, cref, tolerance, picking)
        st.caption(f"Reference: {ui.plain(cref.source)} (green lines; phone labels when at most 60 phones are in "
                   "view: zoom in). ▼ detected boundaries of δ_t and KL_t. Scores at "
                   f"{1000 * tolerance:.0f} ms, one-to-one matching; p2p: phone-to-phone boundaries only "
                   "(silence edges excluded).")
        st.dataframe(table, hide_index=True, width="stretch")


@st.fragment
def trajectory(highlight: tuple[float, float] | None) -> None:
    """The latent trajectory, linked to the view and the selection (drawn solid, the rest faded); reruns alone
    when its projection or dimensions change. Once a new clip's trajectory is sent (the after-paint rerun), when
    the whole page is on the screen, the other projection's trajectory is built too."""
    st.subheader("Latent trajectory", help="Each point is one frame's posterior mean μ_z,t (left) or prior mean "
                 "μ_0,t (right), projected on three principal axes; consecutive frames are joined.")
    t1, t2 = st.columns([3, 1])
    kind = t1.radio("Projection", PROJECTIONS, horizontal=True,
                    key="traj_proj", help="Fixed: the same axes for every clip of this checkpoint, fitted on its "
                    "training windows, so clips compare.")
    dims = 3 if t2.radio("Dimensions", ["2-D", "3-D"], horizontal=True, key="traj_dims") == "3-D" else 2
    drawn = st.session_state.setdefault(TRAJ_DRAWN, set())
    if (ref.key, clip.digest) not in drawn:  # first sight of this clip's trajectory: below the fold, so it is
        drawn.add((ref.key, clip.digest))    # drawn in a rerun of this fragment once Figure 2 is on the screen
        st.session_state[WARM_AFTER] = (ref.key, clip.digest)
        ui.plotly_graph_hold("trajectory", TRAJ_PX, f"{ref.key}:{clip.digest[:16]}")
        return
    segments = ui.reference_segments(clip)
    labels = frame_labels(a.times, segments) if segments else None
    phones = tuple(segments) if segments else None  # the colours depend on the labels, not only on having some

    def projected(which: str):
        """(projection, trajectory figure) for the projection `which` (one of PROJECTIONS), in the current
        dimensions (memo); (None, None) where there is no fixed projection."""
        proj = ui.clip_projection(ref, clip, a) if which.startswith("PCA") else ui.checkpoint_projection(ref, model)
        if proj is None:
            return None, None
        names = [f"PC{k + 1} ({100 * e:.0f} %)" for k, e in enumerate(proj.explained)]
        post, prior = ui.memo("projected", (ref.key, clip.digest, which, proj.source), 16,
                              lambda: (proj(a.z_mean), proj(a.prior_mean)))  # [T, 3] each
        return proj, ui.memo("trajectory", (ref.key, clip.digest, which, dims, highlight, proj.source, phones), 32,
                             lambda: trajectory_figure(post[:, :dims], prior[:, :dims], a.times, highlight=highlight,
                                                       labels=labels, axis_names=names, height=TRAJ_PX))

    proj, fig = projected(kind)
    if proj is None:
        st.info("No fixed projection for this checkpoint: it has no projection file and there are no example "
                "clips to fit one on.")
        return
    ui.plotly_graph(fig, key="trajectory")
    st.caption(f"Projection fitted on {proj.source}; the percentages are the variance along each axis there. "
               + ("Coloured by reference phone." if labels else "Coloured by time.")
               + (f" Solid: {highlight[0]:.3f}–{highlight[1]:.3f} s." if highlight else ""))
    if st.session_state.get(WARM_AFTER) == (ref.key, clip.digest):
        del st.session_state[WARM_AFTER]  # this clip's page is all on the screen: prepare the other projection's
        other = PROJECTIONS[1 - PROJECTIONS.index(kind)]  # trajectory
        other_fig = projected(other)[1]
        if other_fig is not None:
            ui.figure_json(other_fig)


explore_box, reference_box = st.container(), st.container()  # the figure first; its reference inputs below it
with reference_box:
    st.subheader("Reference boundaries", help="Do the latents find the phones? Detected peaks of δ_t and KL_t "
                 "scored against reference phone boundaries, beside signal-processing baselines "
                 "(docs/segmentation.md).")
    cref = ui.reference_inputs(clip)
    if cref is None:
        st.caption("No reference for this clip: upload one or type its transcript to score the latents' boundaries.")
with explore_box:
    explore()

m1, m2, m3, m4 = st.columns(4)
m1.metric("ELBO on this clip", f"{a.elbo:,.0f} nats", help="Σ_t (log p(x_t | z_t, h_t−1) − KL_t) along the "
          "posterior-mean path: the ELBO's integrand at z = μ, not its expectation.")
m2.metric("ELBO per frame", f"{a.elbo / a.n_frames:.1f} nats")
if a.has_latent:
    m3.metric("Mean KL_t", f"{a.kl.mean():.3g} nats")
    m4.metric("Mean δ_t", f"{a.delta[1:].mean() if a.n_frames > 1 else 0.0:.3g}")

st.download_button("Download the per-frame table (CSV)", ui.frames_csv_for(ref, clip, a),
                   file_name=f"{clip.name.rsplit('.', 1)[0]}-{ref.label.replace('/', '-')}-frames.csv",
                   mime="text/csv", on_click="ignore", icon=":material/download:")
st.markdown(ui.ROWS_TEXT, unsafe_allow_html=True)

@st.fragment
def hear() -> None:
    """Hear what the model hears: the reconstruction and a continuation, on Figure 2's time axis."""
    st.subheader("Hear what the model hears")
    h1, h2, h3, h4, h5 = st.columns([2, 1, 1, 1, 1], vertical_alignment="bottom")
    if h1.button("Reconstruct the clip", key="hear_reconstruct", icon=":material/hearing:",
                 help="The decoder's mean of p(x_t | z_t, h_t−1) at every frame, with z_t = μ_z,t: what the model "
                 "makes of each frame given everything before it."):
        st.session_state["hear_recon"] = (ref.key, clip.digest)
    sel = selection()
    default_at = round(sel[0] if sel else duration / 2, 3)
    at = h2.number_input("Continue from (s)", 0.0, duration, default_at, FRAME_SECONDS, format="%.3f",
                         key=f"hear_at_{clip.digest[:16]}")
    secs = h3.number_input("for (s)", 0.25, 10.0, 2.0, 0.25, key="hear_secs")
    seed = h4.number_input("seed", 0, 2**31 - 1, 0, key="hear_seed")
    if h5.button("Continue", key="hear_continue", icon=":material/fast_forward:",
                 help="Condition on the clip up to that time, then sample z_t from the prior and x_t from the "
                 "decoder, frame by frame. The same seed gives the same audio."):
        st.session_state["hear_cont"] = (ref.key, clip.digest, float(at), float(secs), int(seed))
    want_recon = st.session_state.get("hear_recon") == (ref.key, clip.digest)
    req = st.session_state.get("hear_cont")
    want_cont = bool(req) and req[:2] == (ref.key, clip.digest)
    if not (want_recon or want_cont):
        st.caption("Reconstruct the clip, or continue it from a time (the selection's start by default).")
        return
    recon = ui.reconstruction(ref, model, clip) if want_recon else None
    cont, c_at = (ui.continuation(ref, model, clip, req[2], req[3], req[4]), req[2]) if want_cont else (None, 0.0)
    c_at = int(c_at / FRAME_SECONDS + 1e-9) * FRAME_SECONDS  # the continuation starts on a frame boundary
    cols = st.columns(3)
    cols[0].caption("The clip")
    cols[0].audio(ui.wav_part(clip.digest, a.waveform), format="audio/wav")
    if recon is not None:
        cols[1].caption("Reconstruction (decoder mean)")
        cols[1].audio(ui.wav_memo(("recon", ref.key, clip.digest), recon), format="audio/wav")
    if cont is not None:
        cols[2].caption(f"Clip to {c_at:.3f} s, then the model (seed {req[4]})")
        cut = int(round(c_at * a.sample_rate))
        cols[2].audio(ui.wav_memo(("cont", ref.key, clip.digest, *req[2:]),
                                  lambda: np.concatenate([a.waveform[:cut], cont])), format="audio/wav")
    fig = hear_figure(a.waveform, recon, cont, at=c_at, shapes=vlines([c_at]) if cont is not None else ())
    ui.plotly(fig, key="hear_figure")


hear()

st.subheader("Listen to the model")
g1, g2, g3 = st.columns([2, 1, 1], vertical_alignment="bottom")
seconds = g1.slider("Seconds", 0.5, 10.0, 3.0, 0.5, key="home_gen_seconds")
seed = g2.number_input("Seed", 0, 2**31 - 1, 0, key="home_gen_seed")
if g3.button("Generate", key="home_generate", icon=":material/graphic_eq:"):
    st.session_state["home_generated"] = (ref.key, seconds, int(seed))
req = st.session_state.get("home_generated")
if req and req[0] == ref.key:
    audio = ui.generated(ref, model, req[1], req[2])[0]
    st.audio(ui.wav(audio), format="audio/wav")
    st.caption(f"{req[1]:g} s sampled from {ui.plain(ref.label)} with seed {req[2]}: z_t from the prior p(z_t | h_t−1), "
               f"x_t from p(x_t | z_t, h_t−1) ({len(audio) / vrnn.SAMPLE_RATE:.2f} s at 16 kHz).")

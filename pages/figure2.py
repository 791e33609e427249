"""Home: Chung et al. 2015, Figure 2 for the chosen clip and checkpoint (delta_t, KL_t, waveform)."""

import streamlit as st

import ui
import vrnn
from vrnn.audio import FRAME_SECONDS
from vrnn.plots import figure2

st.title("Figure 2")
st.markdown("How the latent variable of the VRNN responds to each 12.5 ms frame of a clip (Chung et al. 2015, "
            "Figure 2). Choose a checkpoint and a clip, or upload your own, in the sidebar.")

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

# Extra rows (off by default) and the time range: these only redraw; the model pass above is cached.
c1, c2, c3 = st.columns(3)
show_mel = c1.toggle("Log-mel spectrogram", key="row_mel")
show_kl = c2.toggle("KL per latent dimension", key="row_kl_dims", disabled=not a.has_latent)
show_means = c3.toggle("Prior and posterior means", key="row_means", disabled=not a.has_latent)

duration = a.n_frames * FRAME_SECONDS
time_range = None
if a.n_frames > 4:
    lo, hi = st.slider("Time range (s): zooms every row and plays just that stretch", 0.0, duration,
                       (0.0, duration), step=FRAME_SECONDS, format="%.3f", key=f"zoom_{clip.digest[:16]}")
    if hi - lo < FRAME_SECONDS:
        hi = min(duration, lo + FRAME_SECONDS)
    if (lo, hi) != (0.0, duration):
        time_range = (lo, hi)

fig = figure2(a, spectrogram=ui.log_mel(clip.digest, a.waveform) if show_mel else False, kl_heatmap=show_kl,
              means=show_means, time_range=time_range)
if time_range:
    i0, i1 = int(time_range[0] * a.sample_rate), int(time_range[1] * a.sample_rate)
    st.audio(ui.wav(a.waveform[i0:i1]), format="audio/wav")
    st.caption(f"Playing {time_range[0]:.3f}–{time_range[1]:.3f} s of the clip.")
else:
    st.audio(ui.wav(a.waveform), format="audio/wav")
ui.plotly(fig, key="figure2")

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

"""Generate: sample speech-like audio from one or more checkpoints (Chung et al. 2015, Figure 3), listen to
each sample and download it as WAV."""

import numpy as np
import streamlit as st

import ui
import vrnn
from vrnn.plots import figure3


@st.cache_data(max_entries=32, show_spinner=False)
def _decoder_mean(ckpt_key: str, seconds: float, seed: int, n: int, _model: vrnn.VRNN) -> np.ndarray:
    """n decoder-mean generations (no output noise), float32 [n, N]; `ui.generated` caches the sampled ones.
    (Here, not in ui.py, until ui.generated takes output_noise.)"""
    return np.atleast_2d(vrnn.generate(_model, seconds=seconds, seed=seed, n_samples=n, output_noise=False))


st.title("Generate")
st.caption("Each step draws z_t from the prior p(z_t | h_t−1) and the frame x_t from p(x_t | z_t, h_t−1), "
           "as in the paper's Figure 3, which compares samples of RNN-GMM and VRNN-Gauss side by side.")

ckpts = ui.require_checkpoints()
first = st.session_state.get("checkpoint")
chosen = st.multiselect("Checkpoints", list(ckpts), default=[first if first in ckpts else next(iter(ckpts))],
                        max_selections=4, key="gen_ckpts")
c1, c2, c3 = st.columns(3)
seconds = c1.slider("Length (s)", 0.5, 10.0, 2.0, 0.5, key="gen_seconds")
seed = c2.number_input("Seed", 0, 2**31 - 1, 0, key="gen_seed")
n = c3.number_input("Samples per checkpoint", 1, 4, 2, key="gen_n")
OUTPUTS = {"Sampled x_t (as in the paper)": True, "Decoder mean (no output noise)": False}
output = st.radio("Each frame x_t", list(OUTPUTS), horizontal=True, key="gen_output",
                  help="Sampled: x_t is drawn from p(x_t | z_t, h_t−1), as in the paper's Figure 3; its noise is "
                       "most of the hiss. Decoder mean: x_t is that distribution's mean, a smoother signal that is "
                       "not what the paper's samples are.")
if st.button("Generate", type="primary", icon=":material/graphic_eq:", disabled=not chosen):
    st.session_state["gen_request"] = (tuple(chosen), float(seconds), int(seed), int(n), OUTPUTS[output])

req = st.session_state.get("gen_request")
if not req:
    st.stop()
labels, seconds, seed, n, sampled = req
cols = st.columns(len(labels))
for col, label in zip(cols, labels, strict=True):
    with col:
        st.markdown(f"**{label}**")
        if label not in ckpts:
            st.warning(f"{label} is no longer available.")
            continue
        ref = ckpts[label]
        model = ui.load_model(ref, stop=False)
        if model is None:
            continue
        samples = (ui.generated(ref, model, seconds, seed, n) if sampled  # [n, N]
                   else _decoder_mean(ref.key, float(seconds), int(seed), int(n), model))
        st.caption(f"{model.config.family} · {'sampled x_t' if sampled else 'decoder mean'}")
        names = [f"seed {seed}, {'sample' if sampled else 'mean'} {i + 1}" for i in range(n)]
        ui.plotly(figure3(dict(zip(names, samples, strict=True))), key=f"gen_fig_{label}")
        for name, audio in zip(names, samples, strict=True):
            data = ui.wav(audio)
            st.audio(data, format="audio/wav")
            st.download_button(f"Download {name} (WAV)", data, mime="audio/wav", on_click="ignore",
                               file_name=f"{label.replace('/', '-')}-seed{seed}-{name.split()[-2]}{name.split()[-1]}.wav",
                               key=f"dl_{label}_{name}", icon=":material/download:")

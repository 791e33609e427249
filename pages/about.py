"""About: the model in a few lines, the paper's equations, what delta_t and KL_t mean, and where the bundled
data and models come from."""

import streamlit as st

import ui

st.title("About VRNN Explorer")
st.markdown("""
VRNN Explorer shows what a **variational recurrent neural network** (Chung, Kastner, Dinh, Goel, Courville,
Bengio: *A Recurrent Latent Variable Model for Sequential Data*, NIPS 2015) does with raw speech. The waveform
at 16 kHz is cut into frames x<sub>t</sub> of 200 samples (12.5 ms). An LSTM carries the past in its state
h<sub>t−1</sub>; at every frame a latent variable z<sub>t</sub> with a learned, state-dependent prior captures
what the past cannot predict. The figures follow section 3 of the paper.
""", unsafe_allow_html=True)

st.subheader("The model (section 3)")
st.markdown("**Prior**, eq. (5): the latent variable's distribution given the past")
st.latex(r"z_t \sim \mathcal{N}\big(\mu_{0,t}, \operatorname{diag}(\sigma_{0,t}^2)\big), \qquad "
         r"[\mu_{0,t}, \sigma_{0,t}] = \varphi_\tau^{\text{prior}}(h_{t-1})")
st.markdown("**Generation**, eq. (6): the frame given the latent variable and the past")
st.latex(r"x_t \mid z_t \sim \mathcal{N}\big(\mu_{x,t}, \operatorname{diag}(\sigma_{x,t}^2)\big), \qquad "
         r"[\mu_{x,t}, \sigma_{x,t}] = \varphi_\tau^{\text{dec}}\big(\varphi_\tau^{z}(z_t), h_{t-1}\big)")
st.markdown("**Recurrence**, eq. (7), and the joint distribution it implies, eq. (8)")
st.latex(r"h_t = f_\theta\big(\varphi_\tau^{x}(x_t), \varphi_\tau^{z}(z_t), h_{t-1}\big), \qquad "
         r"p(x_{\le T}, z_{\le T}) = \prod_{t=1}^{T} p(x_t \mid z_{\le t}, x_{<t})\, p(z_t \mid x_{<t}, z_{<t})")
st.markdown("**Inference**, eq. (9): the approximate posterior (the encoder) also sees the current frame")
st.latex(r"z_t \mid x_t \sim \mathcal{N}\big(\mu_{z,t}, \operatorname{diag}(\sigma_{z,t}^2)\big), \qquad "
         r"[\mu_{z,t}, \sigma_{z,t}] = \varphi_\tau^{\text{enc}}\big(\varphi_\tau^{x}(x_t), h_{t-1}\big)")
st.markdown("**Training objective**, eq. (11): the variational lower bound (ELBO), a sum over frames")
st.latex(r"\mathbb{E}_{q(z_{\le T} \mid x_{\le T})}\Big[\sum_{t=1}^{T} \Big(-\mathrm{KL}\big(q(z_t \mid x_{\le t}, "
         r"z_{<t}) \,\|\, p(z_t \mid x_{<t}, z_{<t})\big) + \log p(x_t \mid z_{\le t}, x_{<t})\Big)\Big]")
st.markdown("""
All φ are ReLU networks; σ = softplus(·) + 10⁻⁴. The KL between the two diagonal Gaussians has a closed form.
The baselines (RNN-Gauss, RNN-GMM) drop z<sub>t</sub>: the LSTM alone predicts each frame.
""", unsafe_allow_html=True)

st.subheader("What Figure 2 shows")
st.latex(r"\delta_t = \sum_j \big(\mu_{z,t}^{j} - \mu_{z,t-1}^{j}\big)^2, \qquad "
         r"\mathrm{KL}_t = \mathrm{KL}\big(q(z_t \mid x_{\le t}, z_{<t}) \,\|\, p(z_t \mid x_{<t}, z_{<t})\big)")
st.markdown("""
- **δ<sub>t</sub>** measures how much the posterior mean of z<sub>t</sub> moved from one frame to the next.
  The paper reports that it is large where the waveform changes character, for instance at the start and end
  of a sound: the latent variable follows the structure of the speech.
- **KL<sub>t</sub>** (nats) is the frame's term of the ELBO that pays for information put into z<sub>t</sub>:
  how much seeing x<sub>t</sub> changed the model's belief about z<sub>t</sub> compared with what it expected
  from the past alone. It is high where the frame is surprising.
- The analysis follows the posterior mean (z<sub>t</sub> = μ<sub>z,t</sub>, no sampling noise), so the same
  clip always gives the same figure; the ELBO shown is evaluated along that path.
""", unsafe_allow_html=True)

st.subheader("Data and models")
readme = ui.ROOT / "assets" / "README.md"
if readme.is_file():
    st.markdown(readme.read_text(encoding="utf-8"))
else:
    st.info("assets/README.md is missing: it describes the bundled checkpoints and clips.")
ckpts = ui.find_checkpoints()
if ckpts:
    st.markdown("**Checkpoints this app can see**: " + ", ".join(f"`{k}`" for k in ckpts))

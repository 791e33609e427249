"""Compare checkpoints: Figure 2 rows of two to four models side by side for one clip, on one time axis
and one scale per row, with each model's config and training record and its training curves."""

import pandas as pd
import streamlit as st

import ui
import vrnn
from vrnn.plots import compare_figure, training_curves

st.title("Compare checkpoints")
st.caption("Choose two to four checkpoints: bundled ones, files in a folder given with "
           "`streamlit run app.py -- --checkpoints DIR` (snapshots of one run included, to watch the latents "
           "form over training), or your own .safetensors files.")

ckpts = ui.require_checkpoints()
chosen = st.multiselect("Checkpoints", list(ckpts), default=ui.default_pair(ckpts, st.session_state.get("checkpoint")),
                        max_selections=4, key="compare_ckpts")
uploads = st.file_uploader("Add checkpoints (.safetensors)", accept_multiple_files=True, key="compare_uploads",
                           help="Read with safetensors and checked before use; never unpickled.")

refs = [ckpts[k] for k in chosen]
for up in uploads or []:
    try:
        refs.append(ui.uploaded_checkpoint(up))
    except vrnn.CheckpointError as e:
        st.error(ui.plain(str(e)))  # names the upload: the user's text, shown as typed
refs = refs[:4]

models = {}
for ref in refs:
    m = ui.load_model(ref, stop=False)
    if m is not None:
        models[ref.label] = (ref, m)
if len(models) < 2:
    st.info("Choose at least two usable checkpoints to compare.")
    st.stop()

clip = ui.current_clip()
analyses = {label: ui.analysis(ref, m, clip) for label, (ref, m) in models.items()}

st.subheader(f"{ui.plain(clip.name)} ({clip.seconds:.2f} s)")
ui.plotly(compare_figure(analyses), key="compare_figure")

rows = []
for label, (ref, m) in models.items():
    a = analyses[label]
    row = ui.model_summary(ref, m)
    row["ELBO on this clip (nats)"] = round(a.elbo, 1)
    row["ELBO on this clip (nats / frame)"] = round(a.elbo / a.n_frames, 2)
    row["mean KL_t (nats)"] = round(float(a.kl.mean()), 3) if a.has_latent else None
    rows.append(row)
st.dataframe(pd.DataFrame(rows).set_index("checkpoint"), width="stretch")
st.caption("Validation ELBO: from the checkpoint's training record, per 0.5 s sequence (40 frames) as in the "
           "paper's Table 1. ELBO on this clip: along the posterior-mean path.")

curves = ui.training_logs([ref for ref, _ in models.values()])
if curves:
    st.subheader("Training curves")
    ui.plotly(training_curves(curves), key="compare_curves")
else:
    st.caption("No training log (metrics.jsonl) beside these checkpoints, so no training curves.")

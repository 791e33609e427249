"""VRNN Explorer: see what a variational recurrent neural network (Chung et al. 2015) does with speech.

    streamlit run app.py                                  # bundled checkpoints in assets/checkpoints/
    streamlit run app.py -- --checkpoints runs/           # plus every checkpoint under runs/
    VRNN_CHECKPOINTS=DIR VRNN_EXAMPLES=DIR streamlit run app.py

The pages live in pages/; the shared sidebar (checkpoint and clip pickers) and the caches in ui.py.
"""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import ui` / `import vrnn` from any working dir

import ui  # noqa: E402

st.set_page_config(page_title="VRNN Explorer", page_icon="〰️", layout="wide")

page = st.navigation([
    st.Page("pages/figure2.py", title="Figure 2", icon=":material/show_chart:", default=True),
    st.Page("pages/compare.py", title="Compare checkpoints", icon=":material/compare_arrows:"),
    st.Page("pages/generate.py", title="Generate", icon=":material/graphic_eq:"),
    st.Page("pages/about.py", title="About", icon=":material/info:"),
])
ui.sidebar()
page.run()

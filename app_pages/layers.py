"""Layer similarity: how alike the teacher's and a student's representations are, layer by layer (linear CKA
over validation texts), with the teacher layers the student was built from marked.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from distill_core import app
from distill_core.config import MODEL_TITLES, SHORT_TITLES
from distill_core.views import layers as lyv

TEXT_COUNTS = [100, 200, 300, 500]


def reading_ui(sim, other: str) -> None:
    """One sentence per student layer: the teacher layer it is most like, and the one it was built from."""
    if not sim.layer_map:
        st.caption("This student was not built from the teacher's layers (no layer map), so no cell is marked.")
        return
    best = lyv.best_match(sim, "mean")
    t_names = lyv.layer_names(sim.mean.shape[0])
    lines = []
    for i, j in enumerate(sim.layer_map, start=1):
        near = t_names[best[i]]
        same = best[i] == j + 1
        lines.append(f"- Student layer {i} was built from teacher layer {j + 1}; after training it is most like "
                     f"teacher **{near}** (CKA {sim.mean[best[i], i]:.2f})" + ("." if same else
                     f", and {sim.mean[j + 1, i]:.2f} with the layer it came from."))
    st.markdown("\n".join(lines))


def main() -> None:
    st.title("Layer similarity")
    run, students = app.require_comparison()
    if not students:
        return
    st.caption("Which teacher layer does each student layer end up resembling? Linear CKA compares the two models' "
               "representations of the same texts; it ignores rotations and scale, so it works across models.")
    left, right = st.columns([3, 1])
    other = left.radio("Compare the teacher with", students, format_func=MODEL_TITLES.get, horizontal=True,
                       key="layers_other")
    n = right.selectbox("Validation texts", TEXT_COUNTS, index=2, key="layers_n")
    with app.friendly_errors("Layer similarity"):
        sim = app.layer_similarity(run.path, other, n)
        title = SHORT_TITLES[other]
        st.plotly_chart(lyv.cka_figure(sim, title), width="stretch", key="layers_cka")
        st.caption("Each cell is the CKA between a teacher layer (row) and a student layer (column), from 0 (unrelated) "
                   "to 1 (the same up to rotation and scale); orange squares mark the teacher layer each student layer "
                   "was copied from before training. Left: the [CLS] vector; right: the mean over tokens.")
        if np.isnan(sim.cls[0]).any():
            st.caption("The embedding layer's [CLS] vector is the same for every text (no context has reached it "
                       "yet), so its CKA is undefined and left blank.")
        if sim.n_texts < n:
            st.caption(f"The validation split has {sim.n_texts} texts, so all of them were used.")
        if app.is_recurrent(run.path, other):
            st.caption(f"The {MODEL_TITLES[other].lower()} is a BiLSTM: its columns are its word embeddings and its "
                       "LSTM layers, and its [CLS] vector is the LSTM output at the first token, where the backward "
                       "direction has read the whole text.")
        reading_ui(sim, other)
        a, b = st.columns(2)
        a.download_button("Heatmaps (PNG)", lambda: lyv.cka_png(sim, title), f"{run.run_id}_layer_cka.png", "image/png",
                          on_click="ignore", icon=":material/image:", key="dl_layers_png")
        b.download_button("CKA (CSV)", lyv.cka_table(sim).to_csv(index=False).encode(), f"{run.run_id}_layer_cka.csv",
                          "text/csv", on_click="ignore", icon=":material/download:", key="dl_layers_csv")


if __name__ == "__main__":
    main()

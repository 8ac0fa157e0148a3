"""Explanations: which words the teacher and a student relied on for the same text (integrated gradients),
how far their explanations agree, attention rollout as a cheaper second view, and, over a sample of test
texts, whether the student is right for the teacher's reasons.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from distill_core import app
from distill_core.evidence.attributions import TOP_K, agreement, agreement_row, attention_rollout, sample_rows
from distill_core.config import MODEL_TITLES, SHORT_TITLES
from distill_core.views import explain as ev

TEXT_KEY = "explain_text"
OWN = -1  # the "each model's own prediction" choice of the class picker
SAMPLE_SIZES = [25, 50, 100, 200]
SAMPLE_KEY = "exp_sample_n"  # the sample size the reader asked to explain (kept so the results stay on reruns)


def text_ui(run) -> str:
    return app.text_input(run, TEXT_KEY)


def target_ui(run) -> int | None:
    options = [OWN, *range(len(run.label_names))]
    if st.session_state.get("exp_target") not in options:
        st.session_state["exp_target"] = OWN
    choice = st.selectbox("Explain", options, key="exp_target",
                          format_func=lambda i: "each model's predicted class" if i == OWN else f"class {run.label_names[i]}",
                          help="Integrated gradients explain one class at a time: why the model scores it as it does.")
    return None if choice == OWN else int(choice)


def attributions_ui(run, other: str, text: str, target: int | None) -> None:
    t = app.explain(run.path, "teacher", text, target)
    s = app.explain(run.path, other, text, target)
    if t.n_truncated:
        st.warning(f"The text is longer than the models read: the last {t.n_truncated} tokens were cut and are "
                   "not explained.")
    attrs = {"teacher": t, other: s}
    titles = [ev.attribution_title(a, MODEL_TITLES[k]) for k, a in attrs.items()]
    for col, a, title in zip(st.columns(2), attrs.values(), titles):
        col.markdown(f"**{title}**")
        col.html(ev.highlight_html(a))
        col.caption(ev.completeness_caption(a))
    st.caption("Integrated gradients: blue words push the model towards the class it explains, red words away from "
               "it; deeper colour, stronger push (each model on its own scale). The scores add up to how far the "
               "text moves that class's logit from a blank input; the convergence delta is what they miss.")
    left, right = st.columns(2)
    left.download_button("Attributions (PNG)", lambda: ev.attribution_png(list(attrs.values()), titles),
                         f"{run.run_id}_attributions.png", "image/png", on_click="ignore", icon=":material/image:",
                         key="dl_exp_png")
    right.download_button("Attributions (CSV)", ev.attribution_table(attrs).to_csv(index=False).encode(),
                          f"{run.run_id}_attributions.csv", "text/csv", on_click="ignore", icon=":material/download:",
                          key="dl_exp_csv")

    st.subheader("Do the two explanations agree?")
    k = st.columns(3)[0].slider("Top tokens compared", 1, 10, TOP_K, key="exp_k")
    with app.friendly_errors("Agreement"):
        agr = agreement(t, s, k)
        a, b, c = st.columns(3)
        a.metric("Rank correlation (Spearman ρ)", "n/a" if math.isnan(agr["spearman"]) else f"{agr['spearman']:.2f}",
                 help="1: both order the words the same way by evidence; 0: unrelated; −1: opposite.")
        b.metric(f"Top-{agr['k']} overlap", "n/a" if math.isnan(agr["top_k_overlap"]) else f"{agr['top_k_overlap']:.0%}",
                 help=f"Share of the {agr['k']} most important tokens (by |score|) that both models pick.")
        c.metric("Words compared" if agr["unit"] == "words" else "Tokens compared", agr["n_tokens"])
        if agr["unit"] == "words":
            st.caption("The two models split this text into different tokens, so each model's token scores are "
                       "summed per word (lined up by character position) and the words are compared.")
        if t.target != s.target:
            st.caption(f"The two models explain different classes ({t.target_label} and {s.target_label}); pick one "
                       "class above to compare their reasons for the same class.")


def rollout_ui(run, other: str, text: str) -> None:
    st.subheader("Attention rollout")
    if app.is_recurrent(run.path, other):
        st.info(f"Attention rollout follows self-attention through a transformer's layers; the "
                f"{MODEL_TITLES[other].lower()} is a BiLSTM and has none. Its attention-pooling weights, one per token, "
                "are on the Attention page.", icon=":material/info:")
        return
    t_att, s_att = app.attention(run.path, "teacher", text), app.attention(run.path, other, text)
    rows = {"teacher": ev.rollout_scores(t_att.tokens, attention_rollout(t_att.attentions)),
            other: ev.rollout_scores(s_att.tokens, attention_rollout(s_att.attentions))}
    if t_att.tokens != s_att.tokens:
        st.info("The two models split this text into different tokens (their tokenizers differ), so their rollouts "
                "have no common tokens to draw side by side. The attributions above compare them word by word.")
        return
    table = ev.rollout_table(t_att.tokens, rows)
    st.plotly_chart(ev.rollout_figure(table), width="stretch", key="exp_rollout")
    st.caption("How much of what [CLS] holds after the last layer traces back to each word, following attention "
               "through every layer (and the residual path). Cheaper than gradients, but it shows where information "
               "flows, not which way it pushes the prediction.")
    left, right = st.columns(2)
    left.download_button("Rollout (PNG)", lambda: ev.rollout_png(table), f"{run.run_id}_rollout.png", "image/png",
                         on_click="ignore", icon=":material/image:", key="dl_exp_roll_png")
    right.download_button("Rollout (CSV)", table.to_csv(index=False).encode(), f"{run.run_id}_rollout.csv", "text/csv",
                          on_click="ignore", icon=":material/download:", key="dl_exp_roll_csv")


def sample_ui(run, other: str) -> None:
    st.subheader(f"Over test texts: is the {SHORT_TITLES[other].lower()} right for the teacher's reasons?")
    st.caption("On a sample of test texts, both models explain the class the teacher predicts; each text adds one "
               "rank correlation and one top-k overlap to the distributions below.")
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    n = left.selectbox("Test texts", SAMPLE_SIZES, index=1, key="exp_n")
    if right.button("Explain the sample", icon=":material/play_arrow:", key="exp_run"):
        st.session_state[SAMPLE_KEY] = n
    asked = st.session_state.get(SAMPLE_KEY)
    if not asked:
        st.caption("About a second per text per model on a CPU; results are kept while the app runs.")
        return
    preds = app.predictions_table(run.path)
    picked = sample_rows(len(preds), asked, seed=0)
    bar = st.progress(0.0, text="Explaining…")
    out = []
    for i, r in enumerate(picked):
        bar.progress(i / len(picked), text=f"Explaining test text {i + 1} of {len(picked)}…")
        text = str(preds["text"].iloc[r])
        t = app.explain(run.path, "teacher", text)
        s = app.explain(run.path, other, text, t.target)
        out.append(agreement_row(int(r), t, s, int(preds["label"].iloc[r]), st.session_state.get("exp_k", TOP_K)))
    bar.empty()
    sample = pd.DataFrame(out)
    summary = ev.agreement_summary(sample)
    a, b, c = st.columns(3)
    a.metric("Median rank correlation", f"{summary['median_spearman']:.2f}", f"{summary['n']} texts", delta_color="off",
             delta_arrow="off")
    b.metric("Median top-k overlap", f"{summary['median_top_k_overlap']:.0%}")
    c.metric("Same class as the teacher", f"{summary['share_agreeing']:.0%}",
             help="Share of the sample where the student predicts the class the teacher predicts.")
    st.plotly_chart(ev.agreement_figure(sample, other), width="stretch", key="exp_agreement")
    st.caption("Right of zero, the student ranks the words much as the teacher does; texts where it predicts "
               "another class are stacked in red. A student that agrees with the teacher's answers but not its "
               "reasons may fail differently on new data.")
    left, right = st.columns(2)
    left.download_button("Distribution (PNG)", lambda: ev.agreement_png(sample, other),
                         f"{run.run_id}_attribution_agreement.png", "image/png", on_click="ignore",
                         icon=":material/image:", key="dl_exp_agr_png")
    right.download_button("Per text (CSV)", sample.to_csv(index=False).encode(), f"{run.run_id}_attribution_agreement.csv",
                          "text/csv", on_click="ignore", icon=":material/download:", key="dl_exp_agr_csv")


def main() -> None:
    st.title("Explanations")
    run, students = app.require_comparison()
    if not students:
        return
    text = text_ui(run)
    left, right = st.columns(2)
    with left:
        other = st.radio("Compare the teacher with", students, format_func=MODEL_TITLES.get, horizontal=True,
                         key="exp_other")
    with right:
        target = target_ui(run)
    if not text:
        st.info("Type a text above to see which words each model relied on.")
    else:
        with app.friendly_errors("Explanations"):
            attributions_ui(run, other, text, target)
        with app.friendly_errors("Attention rollout"):
            rollout_ui(run, other, text)
    with app.friendly_errors("Explanations over test texts"):
        sample_ui(run, other)


if __name__ == "__main__":
    main()

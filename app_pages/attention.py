"""Attention: where the teacher and the student look, for one text, on one colour scale.

Default: each model's last layer, mean over heads (what the reports showed). "Aligned" pairs a student
layer with the teacher layer it was initialised from and adds their difference; the [CLS] row shows
what the classifier token gathers. Each figure exports as PNG (drawn with matplotlib).

A BiLSTM student has no self-attention maps: its attention-pooling weights (one per token) are drawn beside the
teacher's [CLS] row instead, the two ways each model gathers the vector its classifier reads.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from distill_core import app
from distill_core.config import MODEL_COLORS, MODEL_TITLES, SHORT_TITLES
from distill_core.views import attention as av

TEXT_KEY = "att_text"
MEAN = -1  # the "mean of heads" choice in a head selector
DEFAULT_CAP = 40  # tokens shown before the length slider appears
CAP_KEY = "att_cap_value"  # the reader's "tokens shown", kept apart from the slider's own state


def text_ui(run) -> str:
    return app.text_input(run, TEXT_KEY)


def _select(container, label: str, options: list[int], key: str, default: int, fmt, **kw) -> int:
    if st.session_state.get(key) not in options:
        st.session_state[key] = default  # first visit, or another run with fewer layers/heads
    return container.selectbox(label, options, key=key, format_func=fmt, **kw)


def selectors_ui(run, other: str, t_att, s_att) -> tuple[int, int | None, int, int | None, bool]:
    """Layer and head for each model (0-based; head None = mean). Aligned mode ties the teacher's layer."""
    t_layers, t_heads = t_att.attentions.shape[:2]
    s_layers, s_heads = s_att.attentions.shape[:2]
    aligned = st.toggle("Aligned layers", key="att_aligned",
                        help="Pair the student layer with the teacher layer it was initialised from, and show "
                             "their difference.")
    left, right = st.columns(2)
    heads = lambda h: "mean of heads" if h == MEAN else f"head {h + 1}"  # noqa: E731
    s_layer = _select(right, f"{MODEL_TITLES[other]} layer", list(range(s_layers)), "att_s_layer", s_layers - 1,
                      lambda i: f"layer {i + 1} of {s_layers}")
    if aligned:
        mapping = app.layer_map(run.path, other)
        t_aligned, exact = av.aligned_teacher_layer(s_layer, mapping, t_layers, s_layers)
        st.session_state["att_t_layer"] = t_aligned
        st.caption(f"{MODEL_TITLES[other]} layer {s_layer + 1} was initialised from teacher layer {t_aligned + 1}."
                   if exact else f"No layer map in this student: teacher layer {t_aligned + 1} is the one at the "
                                 "same relative depth.")
    t_layer = _select(left, "Teacher layer", list(range(t_layers)), "att_t_layer", t_layers - 1,
                      lambda i: f"layer {i + 1} of {t_layers}", disabled=aligned)
    t_head = _select(left, "Teacher head", [MEAN, *range(t_heads)], "att_t_head", MEAN, heads)
    s_head = _select(right, f"{MODEL_TITLES[other]} head", [MEAN, *range(s_heads)], "att_s_head", MEAN, heads)
    return t_layer, (None if t_head == MEAN else t_head), s_layer, (None if s_head == MEAN else s_head), aligned


def _keep_cap() -> None:
    st.session_state[CAP_KEY] = st.session_state["att_cap"]


def display_ui(tokens: list[str]) -> tuple[bool, int | None]:
    """Hide special tokens and punctuation or not, and how many tokens to show (long texts only)."""
    left, right = st.columns(2)
    hide = left.toggle("Hide [CLS], [SEP] and punctuation", key="att_hide",
                       help="Drops their rows and columns and renormalises each row to sum to 1, so the weight "
                            "parked on [SEP] and full stops does not wash out the words.")
    n_tokens = int(av.keep_mask(tokens, hide).sum())
    cap = None
    if n_tokens > DEFAULT_CAP:
        # The slider is re-created when its range changes (another text, hiding tokens), which would reset
        # it; a plain session key keeps the reader's choice and is copied into the widget each run.
        cap = st.session_state.get(CAP_KEY, DEFAULT_CAP)
        st.session_state["att_cap"] = cap if 10 <= cap <= n_tokens else DEFAULT_CAP
        cap = right.slider("Tokens shown", 10, n_tokens, key="att_cap", on_change=_keep_cap,
                           help="Long texts: the first tokens only (you can also zoom into the charts).")
    return hide, cap


def heatmaps_ui(run, other: str, text: str) -> None:
    t_att = app.attention(run.path, "teacher", text)
    s_att = app.attention(run.path, other, text)
    if t_att.n_truncated:
        st.warning(f"The text is longer than the models' {len(t_att.tokens)} tokens: the last "
                   f"{t_att.n_truncated} tokens were cut before the models saw them.")
    t_layer, t_head, s_layer, s_head, aligned = selectors_ui(run, other, t_att, s_att)
    hide, cap = display_ui(t_att.tokens)
    t_view = av.attention_view(t_att, t_layer, t_head, hide, cap)
    s_view = av.attention_view(s_att, s_layer, s_head, hide, cap)
    if t_view.n_capped:
        st.caption(f"Showing the first {len(t_view.tokens)} of {len(t_view.tokens) + t_view.n_capped} tokens.")
    labels = app.classifier(run.path, "teacher").labels
    titles = [av.view_title(MODEL_TITLES["teacher"], t_view, labels), av.view_title(MODEL_TITLES[other], s_view, labels)]
    st.plotly_chart(av.attention_pair_figure([t_view, s_view], titles), width="stretch", key="att_pair")
    png_button("Heatmaps (PNG)", lambda: av.attention_png([t_view, s_view], titles), f"{run.run_id}_attention.png")

    if aligned:
        st.subheader("Teacher minus student")
        with app.friendly_errors("Difference map"):
            diff = av.difference_matrix(t_view, s_view)
            title = f"Teacher layer {t_view.layer + 1} − {MODEL_TITLES[other].lower()} layer {s_view.layer + 1}"
            st.plotly_chart(av.difference_figure(t_view.tokens, diff, title), key="att_diff")
            diff_view = dataclasses.replace(t_view, matrix=diff)
            png_button("Difference (PNG)", lambda: av.attention_png([diff_view], [title], diff=True),
                       f"{run.run_id}_attention_diff.png")
    else:
        st.caption("Turn on **Aligned layers** to compare a student layer with the teacher layer it came from, "
                   "cell by cell.")

    st.subheader("What [CLS] gathers")
    st.caption("The [CLS] token's attention row in the layers shown: the classifier reads its final vector.")
    names = [SHORT_TITLES["teacher"], SHORT_TITLES[other]]
    colors = [MODEL_COLORS["teacher"], MODEL_COLORS[other]]
    if t_view.cls_row is None:
        st.info("This tokenizer puts no [CLS] token first, so there is no [CLS] row to show.")
        return
    st.plotly_chart(av.cls_figure([t_view, s_view], names, colors), width="stretch", key="att_cls")
    png_button("[CLS] attention (PNG)", lambda: av.cls_png([t_view, s_view], names, colors), f"{run.run_id}_cls.png")


def pooling_ui(run, other: str, text: str) -> None:
    """A BiLSTM student: its pooling weights beside the teacher's [CLS] row (last layer, mean of heads)."""
    title = MODEL_TITLES[other]
    st.info(f"The {title.lower()} is a BiLSTM: it has attention-pooling weights, one per token, not self-attention "
            "maps. Below, the weight it gives each token when it pools them into the vector its classifier reads, "
            "beside the teacher's [CLS] attention row (last layer, mean of heads), which gathers that vector for the "
            "teacher.", icon=":material/info:")
    t_att = app.attention(run.path, "teacher", text)
    pool = app.pooling(run.path, other, text)
    if t_att.n_truncated:
        st.warning(f"The text is longer than the models' {len(t_att.tokens)} tokens: the last "
                   f"{t_att.n_truncated} tokens were cut before the models saw them.")
    hide, cap = display_ui(t_att.tokens)
    view = av.pooling_view(t_att, pool, hide, cap)
    if view.n_capped:
        st.caption(f"Showing the first {len(view.tokens)} of {len(view.tokens) + view.n_capped} tokens.")
    labels = app.classifier(run.path, "teacher").labels
    t_pred, s_pred = int(view.teacher_probs.argmax()), int(view.student_probs.argmax())
    st.caption(f"{MODEL_TITLES['teacher']}: {labels[t_pred]} {view.teacher_probs[t_pred]:.0%} · {title}: "
               f"{labels[s_pred]} {view.student_probs[s_pred]:.0%}")
    names = [SHORT_TITLES["teacher"], SHORT_TITLES[other]]
    st.plotly_chart(av.pooling_figure(view, names), width="stretch", key="att_pooling")
    left, right = st.columns(2)
    with left:
        png_button("Pooling weights (PNG)", lambda: av.pooling_png(view, names), f"{run.run_id}_pooling.png")
    right.download_button("Pooling weights (CSV)", av.pooling_table(view, names).to_csv(index=False).encode(),
                          f"{run.run_id}_pooling.csv", "text/csv", on_click="ignore", icon=":material/download:",
                          key="dl_att_pooling_csv")


def png_button(label: str, render, file_name: str) -> None:
    # Deferred: the PNG is drawn only when the button is pressed, not on every rerun.
    st.download_button(label, render, file_name, "image/png", on_click="ignore", icon=":material/image:",
                       key=f"dl_{file_name}")


def main() -> None:
    st.title("Attention")
    run, students = app.require_comparison()
    if not students:
        return
    text = text_ui(run)
    other = st.radio("Compare the teacher with", students, format_func=MODEL_TITLES.get, horizontal=True,
                     key="att_other")
    if not text:
        st.info("Type a text above to see its attention.")
        return
    with app.friendly_errors("Attention"):
        if app.is_recurrent(run.path, other):
            pooling_ui(run, other, text)
        else:
            heatmaps_ui(run, other, text)


if __name__ == "__main__":
    main()

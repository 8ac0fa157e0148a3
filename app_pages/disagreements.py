"""Disagreements: the test texts where the teacher and a student part ways, what distillation lost and fixed,
and their confusion matrices side by side.

Pick a row to see that text's probabilities for every model and each model's explanation, and to open it on
the Attention, Live classification or Explanations page.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from distill_core import app
from distill_core.config import MODEL_COLORS, MODEL_KINDS, MODEL_TITLES, SHORT_TITLES
from distill_core.views import disagreements as dv
from distill_core.views import explain as ev
from distill_core.views import live as lv
from distill_core.views.text import display_text

PICK_KEY = "dis_pick"  # the test row inspected below the table
KEPT_KEY = "dis_kept"  # this page's widget values, kept across visits to other pages
TABLE_PICK_KEY = "dis_table_pick"  # the row last picked in the table itself
OPEN_PAGES = {  # page -> (session key its text lives in, file)
    "Attention": ("att_text", "app_pages/attention.py"),
    "Live classification": ("live_text", "app_pages/live_classification.py"),
    "Explanations": ("explain_text", "app_pages/explain.py"),
}


def restore(key: str, default) -> None:
    """Give a widget the value it had on this user's last visit to the page, or ``default`` on the first.

    Streamlit drops the state of widgets a run does not draw, so a trip to the Attention page and back would
    reset every filter; a plain session key (``keep``) survives it, as the sidebar's run picker does.
    """
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(KEPT_KEY, {}).get(key, default)


def keep(key: str):
    st.session_state.setdefault(KEPT_KEY, {})[key] = st.session_state[key]
    return st.session_state[key]


def filters_ui(run, masks: dict, student: str) -> tuple[str, list[str] | None, tuple[float, float], str]:
    """Which texts: the filter (with its count), true classes, and a confidence range of one model."""
    counts = {k: int(m.sum()) for k, m in masks.items()}
    cols = st.columns(len(counts))
    for col, (k, n) in zip(cols, counts.items()):
        col.metric(dv.SHORT_FILTERS[k], f"{n}", f"{n / max(1, counts['all']):.1%} of the test set", delta_color="off",
                   delta_arrow="off", help=dv.FILTERS[k])
    for key, default in (("dis_filter", "disagree"), ("dis_classes", []), ("dis_conf_of", student),
                         ("dis_conf", (0.0, 1.0))):
        restore(key, default)
    if st.session_state["dis_conf_of"] not in ("teacher", student):
        st.session_state["dis_conf_of"] = student  # the other student was compared before
    st.session_state["dis_classes"] = [c for c in st.session_state["dis_classes"] if c in run.label_names]
    st.radio("Show", list(dv.FILTERS), key="dis_filter", horizontal=True,
             format_func=lambda k: f"{dv.FILTERS[k]} ({counts[k]})")
    left, mid, right = st.columns([2, 1, 2])
    left.multiselect("True class", run.label_names, key="dis_classes", placeholder="All classes")
    mid.selectbox("Confidence of", ["teacher", student], key="dis_conf_of", format_func=SHORT_TITLES.get)
    right.slider("Confidence between", 0.0, 1.0, step=0.05, key="dis_conf",
                 help="Keep the texts where that model's top-class probability lies in this range.")
    which, classes, conf_of, (lo, hi) = (keep(k) for k in ("dis_filter", "dis_classes", "dis_conf_of", "dis_conf"))
    return which, (list(classes) or None), (lo, hi), conf_of


def table_ui(run, shown, student: str, signature: str) -> int | None:
    """The filtered table (pick a row to inspect it) and its CSV; returns the test row to inspect."""
    conf = {c: st.column_config.ProgressColumn(c, format="percent", min_value=0, max_value=1)
            for c in shown.columns if c.endswith("confidence")}
    conf[dv.ROW] = st.column_config.NumberColumn(dv.ROW, help="Position in the run's test set", width="small")
    conf["Text"] = st.column_config.TextColumn("Text", width="medium")
    kl = dv.kl_column(student)
    if kl in shown:
        conf[kl] = st.column_config.NumberColumn(kl, format="%.3f", width="small", help="How far the student's "
                                                 "distribution is from the teacher's on this text, in nats (0: identical).")
    # The sort column first, beside the row number, so the order the table is in can be seen without scrolling.
    order = [dv.ROW, *([kl] if kl in shown else []), *[c for c in shown.columns if c not in (dv.ROW, kl)]]
    # A new key whenever the filters change, so a row picked in one filtered table never points into another.
    event = st.dataframe(shown, column_config=conf, column_order=order, hide_index=True, width="stretch", height=360,
                         on_select="rerun", selection_mode="single-row", key=f"dis_table_{signature}")
    st.caption("Click a row to inspect it below; click a column header to sort by it.")
    st.download_button("Table (CSV)", shown.to_csv(index=False).encode(), f"{run.run_id}_disagreements.csv",
                       "text/csv", on_click="ignore", icon=":material/download:", key="dl_dis_table")
    rows = event.selection.rows if event is not None else []
    picked = int(shown[dv.ROW].iloc[rows[0]]) if rows and rows[0] < len(shown) else None
    if picked is not None and picked != st.session_state.get(TABLE_PICK_KEY):
        st.session_state[PICK_KEY] = picked  # a click in the table moves the picker below
    st.session_state[TABLE_PICK_KEY] = picked
    options = [int(r) for r in shown[dv.ROW]]
    if not options:
        return None
    restore(PICK_KEY, options[0])
    if st.session_state[PICK_KEY] not in options:
        st.session_state[PICK_KEY] = options[0]
    texts = dict(zip(options, shown["Text"]))
    st.selectbox("Text to inspect", options, key=PICK_KEY,
                 format_func=lambda r: f"row {r} · {texts[r][:90]}{'…' if len(texts[r]) > 90 else ''}")
    return keep(PICK_KEY)


def open_ui(text: str, label: str) -> None:
    """Buttons that open this text on another page."""
    one_line = " ".join(display_text(text).split())  # one line: the Live page reads several lines as a batch
    cols = st.columns([1.2] + [2] * len(OPEN_PAGES), vertical_alignment="center")
    cols[0].markdown("Open this text on")
    for col, (title, (key, page)) in zip(cols[1:], OPEN_PAGES.items()):
        if col.button(title, key=f"dis_open_{key}", icon=":material/open_in_new:", width="stretch"):
            st.session_state[key] = one_line
            if key == "live_text":
                st.session_state["live_truth"] = {"text": one_line, "label": label}
            st.switch_page(page)


def detail_ui(run, preds, row: int, kinds: list[str], student: str) -> None:
    text, label = str(preds["text"].iloc[row]), str(preds["label_name"].iloc[row])
    st.subheader(f"Test row {row}")
    st.markdown("> " + display_text(text).replace("$", r"\$"))  # a pair of $ would render as maths
    st.caption(f"True label: **{label}**")
    open_ui(text, label)

    probs = dv.text_probabilities(preds, row, kinds)
    series = {SHORT_TITLES[k]: p for k, p in probs.items()}
    colors = {SHORT_TITLES[k]: c for k, c in MODEL_COLORS.items()}
    st.plotly_chart(lv.probabilities_figure(run.label_names, series, colors), width="stretch", key="dis_probs")
    st.caption("Each model's probability for every class on this text; the tallest bar of a colour is that model's "
               "prediction.")
    left, right = st.columns(2)
    left.download_button("Probabilities (PNG)", lambda: dv.probabilities_png(run.label_names, probs, MODEL_COLORS),
                         f"{run.run_id}_row{row}_probs.png", "image/png", on_click="ignore", icon=":material/image:",
                         key="dl_dis_probs_png")
    right.download_button("Probabilities (CSV)", dv.probabilities_table(run.label_names, probs).to_csv().encode(),
                          f"{run.run_id}_row{row}_probs.csv", "text/csv", on_click="ignore",
                          icon=":material/download:", key="dl_dis_probs_csv")

    st.markdown("**Which words each model relied on** (integrated gradients, each model explaining its own prediction)")
    with app.friendly_errors("Attributions"):
        attrs = {k: app.explain(run.path, k, text) for k in ("teacher", student)}
        titles = [ev.attribution_title(a, MODEL_TITLES[k]) for k, a in attrs.items()]
        for col, a, title in zip(st.columns(2), attrs.values(), titles):
            col.markdown(f"**{title}**")
            col.html(ev.highlight_html(a))
            col.caption(ev.completeness_caption(a))
        st.caption("Blue words push the model towards the class it explains, red words away from it; deeper colour, "
                   "stronger push. Open the text on the Explanations page to pick another class.")
        left, right = st.columns(2)
        left.download_button("Attributions (PNG)", lambda: ev.attribution_png(list(attrs.values()), titles),
                             f"{run.run_id}_row{row}_attributions.png", "image/png", on_click="ignore",
                             icon=":material/image:", key="dl_dis_attr_png")
        right.download_button("Attributions (CSV)", ev.attribution_table(attrs).to_csv(index=False).encode(),
                              f"{run.run_id}_row{row}_attributions.csv", "text/csv", on_click="ignore",
                              icon=":material/download:", key="dl_dis_attr_csv")


def confusion_ui(run, preds, student: str) -> None:
    st.subheader("Confusion matrices")
    rates = st.radio("Show", ["counts", "rates"], key="dis_cm_unit", horizontal=True,
                     format_func={"counts": "Counts", "rates": "Rates (share of each true class)"}.get) == "rates"
    labels = run.label_names
    cms = dv.confusion_pair(preds, len(labels), student, rates)
    st.plotly_chart(dv.confusion_figure(cms, labels, student, rates), width="stretch", key="dis_confusion")
    st.caption(f"Rows are the true class, columns the predicted one. The right map is the {SHORT_TITLES[student].lower()} "
               "minus the teacher: red where the student predicts that pair more often, blue where less often; so red "
               "off the diagonal is a mistake the student adds, blue on the diagonal a correct answer it loses.")
    left, right = st.columns(2)
    unit = "rates" if rates else "counts"
    left.download_button("Confusion matrices (PNG)", lambda: dv.confusion_png(cms, labels, student, rates),
                         f"{run.run_id}_confusion_{unit}.png", "image/png", on_click="ignore", icon=":material/image:",
                         key="dl_dis_cm_png")
    right.download_button("Confusion matrices (CSV)", dv.confusion_long(cms, labels, student).to_csv(index=False).encode(),
                          f"{run.run_id}_confusion_{unit}.csv", "text/csv", on_click="ignore",
                          icon=":material/download:", key="dl_dis_cm_csv")


def main() -> None:
    st.title("Disagreements")
    run, students = app.require_comparison()
    if not students:
        return
    st.caption("Accuracy can hide how often a student parts ways with its teacher. Here are the test texts where "
               "they differ, and what distillation kept, lost and fixed.")
    restore("dis_student", students[0])
    if st.session_state["dis_student"] not in students:
        st.session_state["dis_student"] = students[0]
    st.radio("Compare the teacher with", students, format_func=MODEL_TITLES.get, horizontal=True, key="dis_student")
    student = keep("dis_student")
    with app.friendly_errors("Disagreements"):
        preds = app.predictions_table(run.path)
        kinds = [k for k in MODEL_KINDS if f"{k}_probs" in preds]
        table = dv.disagreement_table(preds, run.label_names, kinds, student)
        masks = dv.filter_masks(preds, student)
        which, classes, conf, conf_of = filters_ui(run, masks, student)
        shown = dv.apply_filters(table, masks[which], classes, conf, conf_of)
        kl = dv.kl_column(student)
        if kl in shown:
            shown = dv.sort_table(shown, kl, descending=True)
        st.caption(dv.filter_caption(which, len(shown), student)
                   + (" Sorted by KL, largest first: where the student mimics the teacher least." if kl in shown else ""))
        signature = hashlib.md5(repr((student, which, classes, conf, conf_of)).encode()).hexdigest()[:10]
        row = table_ui(run, shown, student, signature)
        if row is None:
            st.info("No test text matches these filters.")
        else:
            detail_ui(run, preds, row, kinds, student)
        confusion_ui(run, preds, student)


if __name__ == "__main__":
    main()

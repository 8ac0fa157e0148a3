"""Live classification: your text through the teacher and both students, side by side.

One line: each model's class, confidence, full distribution, latency, and the teacher's softened
distribution at a temperature (what the student is trained to match) with the KL to each student.
Several lines, or an uploaded CSV: a batch table to download.
"""

from __future__ import annotations

import random

import streamlit as st

from distill_core import app
from distill_core.evidence.calibration import temperatures
from distill_core.config import MODEL_COLORS, MODEL_KINDS, MODEL_TITLES, SHORT_TITLES
from distill_core.errors import RunError
from distill_core.views import live as lv
from distill_core.views.text import display_text

TEXT_KEY = "live_text"
TRUTH_KEY = "live_truth"  # {"text", "label"} of the random test example last loaded


def _use_example() -> None:
    choice = st.session_state.get("live_example")
    if choice:
        st.session_state[TEXT_KEY] = choice


def _random_example(run_dir) -> None:
    # A callback's exception would surface as a traceback, so the error travels in session state.
    try:
        df = app.predictions_table(run_dir)
    except RunError as e:
        st.session_state["live_example_error"] = str(e)
        return
    row = df.iloc[random.randrange(len(df))]
    # As a reader would type it (entities decoded), on one line so it is not taken for a batch.
    text = " ".join(display_text(row["text"]).split())
    st.session_state[TEXT_KEY] = text
    st.session_state[TRUTH_KEY] = {"text": text, "label": str(row["label_name"])}


def input_ui(run) -> str:
    """Example pickers and the text area; returns its text."""
    examples = lv.example_texts(run.label_names, run.dataset)
    if TEXT_KEY not in st.session_state:
        st.session_state[TEXT_KEY] = examples[0] if examples else ""
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    if examples:
        left.selectbox("Example sentences", examples, index=None, key="live_example",
                       placeholder="Pick an example sentence…", on_change=_use_example)
    right.button("Random test example", icon=":material/casino:", on_click=_random_example, args=(run.path,),
                 width="stretch")
    if err := st.session_state.pop("live_example_error", None):
        st.warning(f"No test examples: {err}")
    text = st.text_area("Text to classify", key=TEXT_KEY, height=110,
                        help="One text per line: several lines are classified as a batch.")
    truth = st.session_state.get(TRUTH_KEY)
    if truth and truth["text"] == text.strip():
        st.caption(f"Random test example — true label: **{truth['label']}**")
    return text


def single_ui(run, kinds: list[str], text: str) -> None:
    outputs = []
    for k in kinds:
        with app.friendly_errors(MODEL_TITLES[k]):  # one broken model folder should not hide the others
            outputs.append(app.predict(run.path, k, text))
    if not outputs:
        return
    first = outputs[0]
    if first.n_truncated:
        st.warning(f"This text has {first.n_tokens} tokens; the models read at most "
                   f"{first.n_tokens - first.n_truncated}, so the last **{first.n_truncated} tokens were cut**.",
                   icon=":material/content_cut:")
    unknown_ui(run, [o.model for o in outputs], text)
    agree, sentence = lv.agreement(outputs)
    (st.success if agree else st.warning)(sentence)
    temps = calibrated_ui(run)
    probs = {o.model: o.probs_at(temps.get(o.model, 1.0)) for o in outputs}  # (C,) each
    for col, o in zip(st.columns(len(outputs)), outputs):
        note = f" (T = {temps[o.model]:.2f})" if o.model in temps else ""
        col.metric(MODEL_TITLES[o.model], o.label, f"{probs[o.model].max():.1%} confidence{note}", delta_color="off", delta_arrow="off")
        col.caption(f":material/timer: {o.ms:.1f} ms · {o.n_tokens} tokens",
                    help=f"Median of {app.LIVE_REPEATS} calls after a warm-up, tokenisation included, batch of one")
    series = {SHORT_TITLES[o.model]: probs[o.model] for o in outputs}
    colors = {SHORT_TITLES[k]: c for k, c in MODEL_COLORS.items()}
    st.plotly_chart(lv.probabilities_figure(first.labels, series, colors), width="stretch", key="live_probs")
    st.caption("Latency: tokenising and one forward pass on this machine, measured the first time a model "
               "sees the text (batch of one, warm model).")
    temperature_ui(run, {o.model: o for o in outputs})


def unknown_ui(run, kinds: list[str], text: str) -> None:
    """A warning when most of the text is unknown to a model's tokenizer (emoji, another script)."""
    counts = {}
    for k in kinds:
        clf = app.classifier(run.path, k)
        counts[k] = (*clf.unknown_tokens(text), getattr(clf.tokenizer, "unk_token", None))
    for note in lv.unknown_warnings(counts):
        st.warning(note, icon=":material/help:")


def calibrated_ui(run) -> dict[str, float]:
    """Each model's fitted temperature when the reader asks for calibrated confidences; else {}."""
    try:
        temps = temperatures(app.calibration(run.path))
    except RunError:
        temps = {}
    on = st.toggle("Calibrated confidences", key="live_calibrated", disabled=not temps,
                   help="Divide each model's logits by the temperature fitted on the validation split, so that a "
                        "confidence of 80% is right about 80% of the time. The predicted class never changes."
                        if temps else "This run has no calibration yet: fit it on the Calibration page.")
    return temps if on else {}


def temperature_ui(run, outputs: dict) -> None:
    """The teacher's softened distribution: the soft targets the distilled student learns from."""
    st.subheader("What the student is taught: the teacher at a temperature")
    if "teacher" not in outputs:
        st.info("This run has no teacher model, so there is no soft target to show.")
        return
    kd_t = float(run.config.get("kd", {}).get("temperature", 2.0))
    t = st.slider("Temperature T", 1.0, 10.0, min(kd_t, 10.0), 0.5, key="live_temperature",
                  help=f"This run distilled at T = {kd_t}. Higher T flattens the distribution and reveals "
                       "which wrong classes the teacher finds plausible ('dark knowledge').")
    teacher = outputs["teacher"]
    series = {"Teacher, T = 1": teacher.probs, f"Teacher, T = {t:g}": teacher.probs_at(t)}
    colors = {"Teacher, T = 1": "#9db4d6", f"Teacher, T = {t:g}": MODEL_COLORS["teacher"]}
    for kind in ("student", "baseline"):
        if kind in outputs:
            name = f"{SHORT_TITLES[kind]}, T = {t:g}"
            series[name], colors[name] = outputs[kind].probs_at(t), MODEL_COLORS[kind]
    left, right = st.columns([3, 1])
    left.plotly_chart(lv.probabilities_figure(teacher.labels, series, colors), width="stretch", key="live_soft")
    for kind in ("student", "baseline"):
        if kind in outputs:
            right.metric(f"KL(teacher ‖ {SHORT_TITLES[kind].lower()}) at T = {t:g}",
                         f"{lv.kl_to_teacher(teacher, outputs[kind], t):.4f} nats",
                         f"{lv.kl_to_teacher(teacher, outputs[kind], 1.0):.4f} at T = 1", delta_color="off", delta_arrow="off")
    right.caption("The distilled student's loss has the term α·T²·KL(teacher_T ‖ student_T); "
                  "lower KL means the student mimics the teacher more closely on this text.")


def table_out_ui(run, kinds: list[str], texts: list[str], name: str) -> None:
    table = app.classify_batch(run.path, kinds, texts)
    if "All agree" in table:
        st.caption(f"{len(table)} texts; the models agree on {table['All agree'].mean():.0%} of them.")
    conf = {c: st.column_config.ProgressColumn(c, format="percent", min_value=0, max_value=1)
            for c in table.columns if c.endswith("confidence")}
    st.dataframe(table, column_config=conf, width="stretch", hide_index=True)
    st.download_button("Download predictions (CSV)", table.to_csv(index=False).encode(), f"{name}.csv", "text/csv",
                       on_click="ignore", icon=":material/download:", key=f"dl_{name}")


def upload_ui(run, kinds: list[str]) -> None:
    with st.expander("Classify a CSV file", icon=":material/upload_file:"):
        up = st.file_uploader("CSV with a text column", type=["csv"], key="live_upload")
        if up is not None:
            with app.friendly_errors("CSV"):
                texts, column = lv.texts_from_csv(up.getvalue())
                st.caption(f"Column `{column}`.")
                table_out_ui(run, kinds, texts, f"{run.run_id}_{up.name.rsplit('.', 1)[0]}_predictions")


def main() -> None:
    st.title("Live classification")
    run = app.require_run()
    if run is None:
        return
    kinds = [k for k in MODEL_KINDS if k in run.models]
    for k in MODEL_KINDS:
        if k not in kinds:
            st.warning(f"The {MODEL_TITLES[k].lower()} is missing from this run (no complete `{k}/` folder)"
                       + (" — it has not been trained yet." if run.status == "running" else "."))
    if not kinds:
        st.info("No model of this run can classify yet. Pick a complete run in the sidebar.")
        return
    text = input_ui(run)
    lines = lv.split_batch(text)
    with app.friendly_errors("Classification"):
        if not lines:
            st.info("Type or paste a text above (or pick an example) to classify it.", icon=":material/keyboard:")
        elif len(lines) > 1:
            st.subheader(f"Batch: {len(lines)} lines")
            st.caption("Each line is classified on its own; put the text on one line to see its details.")
            table_out_ui(run, kinds, lines, f"{run.run_id}_batch_predictions")
        else:
            single_ui(run, kinds, lines[0])
    upload_ui(run, kinds)


if __name__ == "__main__":
    main()

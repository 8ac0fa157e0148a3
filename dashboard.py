"""distill-lens dashboard: is the distilled student good enough to ship, and what does distillation keep?

    streamlit run dashboard.py                       # reads runs from artifacts/runs
    DISTILL_RUNS_DIR=/data/runs streamlit run dashboard.py

This file is the router and the frame around every page: the sidebar run picker (its choice lives in
``st.session_state`` and so follows you across pages), the run's details, and ``st.navigation`` over the
pages in ``app_pages/`` (not ``pages/``: Streamlit treats a folder of that name as
a legacy multipage app and, on a server's first request or a deep link, shows its own menu without this frame). With no run yet, the only page is the welcome page that starts one.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from distill_core import app
from distill_core.views.runs import default_run_id, run_details_markdown, run_label

ROOT = Path(__file__).resolve().parent
PAGES = ROOT / "app_pages"
PICKER_KEY = "run_picker"  # the sidebar selectbox's widget key


def run_picker_ui(runs) -> None:
    """The run picker, defaulting to the newest complete run.

    The choice lives in ``st.session_state[app.RUN_KEY]``, a plain key rather than the widget's own, because
    Streamlit forgets a widget's state on any run that does not draw it; a plain key survives page changes.
    """
    ids = [r.run_id for r in runs]
    if st.session_state.get(app.RUN_KEY) not in ids:
        # First visit, or the picked run was deleted: the newest complete run.
        st.session_state[app.RUN_KEY] = default_run_id(runs)
    st.session_state[PICKER_KEY] = st.session_state[app.RUN_KEY]
    labels = {r.run_id: run_label(r) for r in runs}
    st.sidebar.selectbox("Run", ids, key=PICKER_KEY, format_func=labels.get, on_change=_picked,
                         help="Complete runs, and runs still training (marked so). Newest first.")
    # A long id is cut in the narrow sidebar box: the picked one, whole, wrapped below it.
    st.sidebar.caption(labels[st.session_state[app.RUN_KEY]])


def _picked() -> None:
    st.session_state[app.RUN_KEY] = st.session_state[PICKER_KEY]


def run_details_ui() -> None:
    run = app.selected_run()
    if run is None:
        return
    if run.status == "running":
        st.sidebar.info(f"This run is still training (stage {run.stage}). Pages show what it has written so far.",
                        icon=":material/hourglass_top:")
    elif run.status == "damaged":
        st.sidebar.error(f"This run is damaged: {run.error}. Pages show what is intact; re-train the run to "
                         "repair it.")
    elif run.status != "complete":
        st.sidebar.error(f"This run {run.status}: {run.error}")
    with st.sidebar.expander("Run details", icon=":material/info:"):
        st.markdown(run_details_markdown(run))


def failed_toggle_ui() -> None:
    """Failed or interrupted runs are hidden unless asked for (they rarely have every model)."""
    if app.failed_runs():
        st.sidebar.toggle("Show failed runs", key="show_failed",
                          help="Runs that crashed or were interrupted; pages show what they left behind.")


def deep_link(default, script: Path, url_path: str):
    """A hidden page at ``url_path`` running the default page's ``script``. Streamlit serves the default page at
    the root URL only, so without it a link to the default page's own path (``/overview``) says "Page not found"."""
    return st.Page(script, title=default.title, icon=default.icon, url_path=url_path, visibility="hidden")


def pages(have_runs: bool) -> list:
    """Every page, each at its own URL path (``/overview``, ``/attention``, ...), the default page also at ``/``."""
    # One path for the welcome page whether or not runs exist: a session that trains its first run from it stays on
    # it (and its progress) when the run appears and the Overview becomes the default page.
    welcome = st.Page(PAGES / "welcome.py", title="Welcome" if not have_runs else "Train a run",
                      icon=":material/rocket_launch:", url_path="welcome", default=not have_runs)
    if not have_runs:
        return [welcome]
    found = [
        st.Page(PAGES / "overview.py", title="Overview", icon=":material/table_chart:", url_path="home", default=True),
        st.Page(PAGES / "sweep.py", title="Sweep: T and alpha", icon=":material/tune:", url_path="sweep"),
        st.Page(PAGES / "training_curves.py", title="Training curves", icon=":material/show_chart:",
                url_path="training_curves"),
        st.Page(PAGES / "live_classification.py", title="Live classification", icon=":material/edit_note:",
                url_path="live_classification"),
        st.Page(PAGES / "attention.py", title="Attention", icon=":material/grid_on:", url_path="attention"),
        st.Page(PAGES / "disagreements.py", title="Disagreements", icon=":material/call_split:", url_path="disagreements"),
        st.Page(PAGES / "calibration.py", title="Calibration", icon=":material/straighten:", url_path="calibration"),
        st.Page(PAGES / "explain.py", title="Explanations", icon=":material/lightbulb:", url_path="explanations"),
        st.Page(PAGES / "layers.py", title="Layer similarity", icon=":material/layers:", url_path="layers"),
        st.Page(PAGES / "performance.py", title="Performance", icon=":material/speed:", url_path="performance"),
    ]
    return found + [welcome, deep_link(found[0], PAGES / "overview.py", "overview")]


def main() -> None:
    st.set_page_config(page_title="distill-lens", page_icon=":material/school:", layout="wide")
    app.limit_inference_threads()
    # The toggle is drawn below the picker but decides what the picker lists: read its state first.
    runs = app.available_runs(include_failed=st.session_state.get("show_failed", False))
    if runs:
        run_picker_ui(runs)
        run_details_ui()
    failed_toggle_ui()
    st.navigation(pages(bool(runs))).run()


if __name__ == "__main__":  # streamlit runs this file as __main__
    main()

"""Pure view functions, one module per page: data in -> DataFrame / plotly figure / PNG bytes out.

Nothing here imports Streamlit or reads a run folder: ``distill_core.app`` loads the data (cached) and the
pages in ``app_pages/`` draw what these functions return, so tests call them without a server.

    common.py       shared figure settings and the PNG export
    runs.py         the run picker's labels and the run's details
    overview.py     the models side by side on the test set
    curves.py       training curves
    live.py         live classification: agreement, probabilities, batch tables, example texts
    text.py         texts as a reader sees them: HTML entities decoded (display only)
    attention.py    attention maps: formatting (layers x heads x T x T) apart from rendering
    evidence.py     did distillation pay off: paired differences with intervals, fidelity, seeds, ship checks
    sweep.py        the T/alpha sweep: heatmap, table, the choice
    disagreements.py  the test texts where teacher and students part ways; confusion matrices
    calibration.py  reliability diagrams, ECE/Brier/NLL before and after temperature scaling
    explain.py      integrated-gradients token highlights, explanation agreement, attention rollout
    layers.py       linear CKA between teacher and student layers
    performance.py  the bench's tables and figures
    pruning.py      accuracy, latency and size against sparsity (``prune``'s results)
"""

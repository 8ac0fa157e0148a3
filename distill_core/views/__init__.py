"""Pure view functions, one module per page: data in -> DataFrame / plotly figure / PNG bytes out.

Nothing here imports Streamlit or reads a run folder: ``distill_core.app`` loads the data (cached) and the
pages in ``app_pages/`` draw what these functions return, so tests call them without a server.

    common.py       shared figure settings and the PNG export
    runs.py         the run picker's labels and the run's details
    overview.py     the models side by side on the test set
    curves.py       training curves
    live.py         live classification: agreement, probabilities, batch tables, example texts
    attention.py    attention maps: formatting (layers x heads x T x T) apart from rendering
    performance.py  the bench's tables and figures
"""

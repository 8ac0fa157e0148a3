"""distill-lens core: fine-tune (or bring) a teacher, distil a student from it, write each run to artifacts/.

    from distill_core import distil
    run_dir = distil(df, teacher="your-teacher", student="your-student", models=["student", "baseline"])
"""

__version__ = "0.1.0"


def distil(data, preset: str = "quick", **settings):
    """Train a run on ``data`` (a pandas DataFrame, a file, a folder or a hub name); see ``distill_core.python_api``."""
    from .python_api import distil as _distil

    return _distil(data, preset, **settings)

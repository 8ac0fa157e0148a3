"""Live classification: example texts, batches of lines or a CSV, agreement, probabilities, the teacher at a
temperature. Model answers come in as ``inference.Prediction``.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..config import MODEL_TITLES, SHORT_TITLES
from ..errors import InputError
from ..ship.classifier import unknown_note
from ..ship.inference import Prediction, kl_divergence
from .common import TOP_LEGEND


_AG_NEWS_EXAMPLES = [
    "Kobe Bryant had won the FMVP in the 2009-2010 NBA Final.",
    "Costco faces sex discrimination suit. A lawsuit accuses the warehouse club of discriminating against "
    "female employees.",
    "NASA's new space telescope sends back its first images of distant galaxies.",
    "Leaders of the two countries met in Geneva on Monday for peace talks.",
    "Apple shares jumped after the company reported record sales of its new phone.",
]
_SENTIMENT_EXAMPLES = [
    "A beautifully shot film with a story that stayed with me for days.",
    "Two hours of my life I will never get back; the plot makes no sense at all.",
    "The acting was fine, but the ending felt rushed and predictable.",
]


def is_ag_news(label_names: Sequence[str], dataset: str = "") -> bool:
    return "ag_news" in dataset.lower() or {"world", "sports", "business"} <= {n.lower() for n in label_names}


def example_texts(label_names: Sequence[str], dataset: str = "") -> list[str]:
    """The reports' own example sentences that fit this run's labels (empty for unknown label sets)."""
    names = {n.lower() for n in label_names}
    if is_ag_news(label_names, dataset):
        return list(_AG_NEWS_EXAMPLES)
    if names in ({"neg", "pos"}, {"negative", "positive"}) or any(w in dataset.lower() for w in ("imdb", "sst", "tomatoes")):
        return list(_SENTIMENT_EXAMPLES)
    return []


def attention_default_text(label_names: Sequence[str], dataset: str = "", test_texts: Sequence[str] = ()) -> str:
    """The reports' "Costco" sentence for AG News, else a sentiment example, else the first test text."""
    if is_ag_news(label_names, dataset):
        return _AG_NEWS_EXAMPLES[1]
    examples = example_texts(label_names, dataset)
    if examples:
        return examples[0]
    return next(iter(test_texts), "Type a sentence here.")


def split_batch(text: str) -> list[str]:
    """Non-empty lines of a text area; more than one means "classify as a batch"."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def texts_from_csv(data: bytes | pd.DataFrame, column: str | None = None) -> tuple[list[str], str]:
    """The texts of an uploaded CSV and the column they came from.

    Raises:
        InputError: no usable text column, or no rows; the message names the columns found.
    """
    try:
        df = data if isinstance(data, pd.DataFrame) else pd.read_csv(io.BytesIO(data))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"The file is not a readable CSV ({e}).") from e
    if column is None:
        lower = {c.lower(): c for c in df.columns.astype(str)}
        column = next((lower[c] for c in ("text", "sentence", "content", "review", "document") if c in lower), None)
        if column is None:
            strings = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
            column = strings[0] if strings else None
    if column is None or column not in df.columns:
        raise InputError(f"No text column found; the CSV has columns {list(df.columns)}. Name one 'text'.")
    texts = [str(t) for t in df[column].dropna() if str(t).strip()]
    if not texts:
        raise InputError(f"Column {column!r} has no non-empty texts.")
    return texts, str(column)



def batch_table(texts: Sequence[str], probs: dict[str, tuple[list[str], np.ndarray]]) -> pd.DataFrame:
    """One row per text: each model's label and confidence, and whether they all agree.

    Args:
        texts: (N,). probs: model kind -> (its class names (C,), probabilities (N, C)).
    """
    table = pd.DataFrame({"text": list(texts)})
    preds = {}
    for kind, (labels, p) in probs.items():
        preds[kind] = p.argmax(-1)
        table[MODEL_TITLES[kind]] = [labels[i] for i in preds[kind]]
        table[f"{MODEL_TITLES[kind]} confidence"] = p.max(-1)
    if len(preds) > 1:
        stacked = np.stack(list(preds.values()))  # (M, N)
        table["All agree"] = (stacked == stacked[0]).all(0)
    return table


def unknown_warnings(counts: dict[str, tuple[int, int, str | None]]) -> list[str]:
    """Warnings for the models whose tokenizer knows little of the text, one per distinct count.

    Args:
        counts: model kind -> (unknown tokens, tokens, the tokenizer's unknown token), as
            ``Classifier.unknown_tokens`` gives them.
    """
    by_count: dict[tuple, list[str]] = {}
    for kind, count in counts.items():
        by_count.setdefault(tuple(count), []).append(SHORT_TITLES[kind].lower())
    out = []
    for (unk, n, unk_token), names in by_count.items():
        whose = f"the {names[0]}'s" if len(names) == 1 else f"the {', '.join(names[:-1])} and {names[-1]}'s"
        if note := unknown_note(unk, n, whose, unk_token, several=len(names) > 1):
            out.append(note + ".")
    return out


def agreement(outputs: Sequence[Prediction]) -> tuple[bool, str]:
    """Whether the models predict the same class, and a sentence saying so."""
    labels = {o.label for o in outputs}
    if len(labels) == 1:
        return True, f"All {len(outputs)} models predict **{outputs[0].label}**."
    return False, "The models disagree: " + ", ".join(f"{MODEL_TITLES[o.model]} says **{o.label}**" for o in outputs) + "."


def probabilities_figure(labels: Sequence[str], series: dict[str, np.ndarray], colors: dict[str, str] | None = None,
                         height: int = 320) -> go.Figure:
    """Grouped bars of class probabilities: one series (a model, or a model at a temperature) per colour.

    Args:
        labels: (C,) class names. series: name -> (C,) probabilities.
    """
    colors = colors or {}
    fig = go.Figure([go.Bar(x=list(labels), y=np.asarray(p), name=name, marker_color=colors.get(name),
                            text=[f"{v:.0%}" for v in np.asarray(p)], textposition="outside",
                            hovertemplate="%{x}<br>%{y:.2%}<extra>" + name + "</extra>")
                     for name, p in series.items()])
    fig.update_layout(barmode="group", height=height, yaxis=dict(range=[0, 1.1], tickformat=".0%", title="probability"),
                      margin=dict(t=40, b=10, l=10, r=10), legend=TOP_LEGEND)
    return fig


def kl_to_teacher(teacher: Prediction, other: Prediction, temperature: float) -> float:
    """KL(teacher_T || other_T) in nats: the term the distilled student minimises (before the T² factor)."""
    return kl_divergence(teacher.probs_at(temperature), other.probs_at(temperature))

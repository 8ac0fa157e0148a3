"""Why did a model predict that? Integrated gradients on the input embeddings, attention rollout, and how far
the teacher's and a student's explanations of the same text agree.

    attr = integrated_gradients(clf, "Stocks rallied.")            # tokens (T,), scores (T,), delta
    attr = integrated_gradients(clf, text, target=2)               # for a class the reader picks
    attr = integrated_gradients(clf, text, method="gausslegendre") # captum's default quadrature, for comparison
    agreement(t_attr, s_attr, k=5)                                 # {"spearman", "top_k_overlap", ...}
    table = agreement_over_texts(teacher, student, texts)          # one row per text, targets = teacher's class
    roll = attention_rollout(att.attentions)                       # (T, T); roll[0]: what [CLS] gathered
    time_integrated_gradients(run_dir)                             # seconds per text per model, for the bench

Integrated gradients (Sundararajan et al. 2017) integrate the gradient of the target logit along the straight
path from a baseline input to the text, in the space of the word embeddings (positions untouched). The
baseline keeps [CLS] and [SEP] and puts [PAD] in every other position. Completeness: the token scores sum to
``logit(text) - logit(baseline)``; what they miss is the ``delta`` reported with them.

The integral is taken on a path-guided grid (``method="adaptive"``, the default): one cheap forward pass over
evenly spaced points of the path finds where the target logit changes, and the gradient steps are packed there.
The logit of a fine-tuned model often jumps within a few hundredths of the path; on the quick run's teacher,
Gauss-Legendre with 32 steps (captum's default rule) missed more than 5% of that jump on a quarter of the test
texts, up to 40%, where the path-guided grid with the same 32 gradient steps stays within about 1.5%.

With ``method="gausslegendre"`` this is captum's ``LayerIntegratedGradients`` on ``model.get_input_embeddings()``
(``tests/test_inspect.py`` shows the two equal). Both are computed through ``inputs_embeds`` instead of a
forward hook: the dashboard shares one model object between all its sessions, and a hook on it would alter
every other session's forward passes.
"""

from __future__ import annotations

import bisect
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from ..errors import InputError
from ..ship.inference import TextClassifier, softmax
from ..train.truncation import token_spans

N_STEPS = 32  # gradient evaluations along the path
METHODS = ("adaptive", "gausslegendre")
BATCH = 32  # interpolated inputs per forward/backward pass
TOP_K = 5
SPECIAL = frozenset({"[CLS]", "[SEP]", "[PAD]", "[MASK]", "<s>", "</s>", "<pad>"})


@dataclass
class Attribution:
    """One model's integrated-gradients explanation of one text, for one class."""

    model: str  # the model folder's name: teacher, student, baseline
    tokens: list[str]  # (T,) word pieces, [CLS] and [SEP] included
    scores: np.ndarray  # (T,) attribution per token: IG summed over the embedding dimensions
    target: int  # the class explained
    labels: list[str]  # (C,) class names
    probs: np.ndarray  # (C,) the model's prediction for the text
    logit: float  # target logit of the text
    baseline_logit: float  # target logit of the baseline ([CLS] [PAD] ... [PAD] [SEP])
    delta: float  # convergence delta: sum(scores) - (logit - baseline_logit); 0 for exact integration
    n_steps: int
    n_truncated: int  # tokens cut to fit the model's max_length
    seconds: float
    text: str = ""  # the text explained
    spans: list[tuple[int, int] | None] | None = None  # (T,) each token's character span in ``text``; None: special

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def target_label(self) -> str:
        return self.labels[self.target]


def gauss_legendre(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alpha`` (n,) in (0, 1) and weights (n,) summing to 1 for integrating over [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(int(n_steps))
    return (x + 1.0) / 2.0, w / 2.0


def path_guided_nodes(path_logits: np.ndarray, n_steps: int, uniform_share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint-rule nodes (n,) and weights (n,) on [0, 1], packed where the target logit changes fastest.

    The path is cut into K even pieces (``path_logits`` holds the logit at their K + 1 ends); the node density
    on each piece is ``uniform_share`` spread evenly plus the rest in proportion to how much the logit changes
    over it, and the n cells are equal slices of that density. Every cell is at most ``1 / (n * uniform_share)``
    wide, so a smooth path is still covered.

    Args:
        path_logits: (K + 1,) target logit at ``linspace(0, 1, K + 1)``.
    """
    f = np.asarray(path_logits, dtype=np.float64)
    k = len(f) - 1
    change = np.abs(np.diff(f))  # (K,)
    total = change.sum()
    density = uniform_share + (1 - uniform_share) * (change * k / total if total > 0 else np.ones(k))  # (K,), mean 1
    cdf = np.concatenate([[0.0], np.cumsum(density)]) / density.sum()  # (K + 1,) from 0 to 1
    edges = np.interp(np.linspace(0.0, 1.0, int(n_steps) + 1), cdf, np.linspace(0.0, 1.0, k + 1))  # (n + 1,)
    return (edges[:-1] + edges[1:]) / 2, np.diff(edges)


def baseline_ids(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """(1, T) the text's ids with every non-special token replaced by [PAD] (special tokens kept in place)."""
    special = torch.tensor(tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True),
                           dtype=torch.bool)  # (T,)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return torch.where(special, input_ids[0], torch.full_like(input_ids[0], pad))[None]


def integrated_gradients(clf: TextClassifier, text: str, target: int | None = None, n_steps: int = N_STEPS,
                         batch_size: int = BATCH, method: str = "adaptive") -> Attribution:
    """Integrated gradients of one text for one class, per token.

    Args:
        clf: the model (its ``model``, ``tokenizer`` and ``max_length``).
        text: one text; truncated to the model's ``max_length`` as for classification.
        target: class id to explain; None explains the predicted class.
        n_steps: gradient evaluations along the path. batch_size: interpolated inputs per forward/backward pass.
        method: ``"adaptive"`` (path-guided grid) or ``"gausslegendre"`` (captum's default rule).

    Raises:
        InputError: empty text, or a class id out of range.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("The text is empty: type a sentence to explain.")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    t0 = time.perf_counter()
    model, tok = clf.model, clf.tokenizer
    enc = clf.encode([text])  # cut to max_length as the model was trained (its truncation rule)
    ids = enc["input_ids"]  # (1, T)
    mask = enc["attention_mask"]  # (1, T)
    base = baseline_ids(ids.cpu(), tok).to(clf.device)  # (1, T)
    emb = model.get_input_embeddings()
    with torch.no_grad():
        x, b = emb(ids).float(), emb(base).float()  # (1, T, D) each
        diff = x - b  # (1, T, D)
        # The path's logits: baseline, the interior grid points (adaptive only), the text itself.
        inner = n_steps - 1 if method == "adaptive" else 0
        u = torch.linspace(0, 1, n_steps + 1, dtype=x.dtype, device=x.device)[1 : 1 + inner, None, None]  # (K - 1, 1, 1)
        points = torch.cat([b, b + u * diff, x])  # (K + 1, T, D), or (2, T, D)
        chunk = 2 * batch_size  # forward passes alone need no activations kept for a backward pass
        path = torch.cat([model(inputs_embeds=points[i : i + chunk],
                                attention_mask=mask.expand(len(points[i : i + chunk]), -1)).logits.float()
                          for i in range(0, len(points), chunk)]).cpu().numpy()  # (K + 1, C)
    logits = np.stack([path[-1], path[0]])  # (2, C): the text, the baseline
    n_classes = logits.shape[-1]
    target = int(np.argmax(logits[0])) if target is None else int(target)
    if not 0 <= target < n_classes:
        raise InputError(f"Class {target} does not exist: this model has classes 0..{n_classes - 1}.")

    alphas, weights = path_guided_nodes(path[:, target], n_steps) if method == "adaptive" else gauss_legendre(n_steps)
    total = torch.zeros_like(x[0])  # (T, D) weighted sum of gradients along the path
    with torch.enable_grad():
        for i in range(0, len(alphas), batch_size):
            a = torch.as_tensor(alphas[i : i + batch_size], dtype=x.dtype, device=x.device)[:, None, None]  # (B, 1, 1)
            w = torch.as_tensor(weights[i : i + batch_size], dtype=x.dtype, device=x.device)[:, None, None]
            path = (b + a * diff).requires_grad_(True)  # (B, T, D)
            out = model(inputs_embeds=path, attention_mask=mask.expand(len(a), -1)).logits  # (B, C)
            (grad,) = torch.autograd.grad(out[:, target].sum(), path)  # (B, T, D)
            total += (w * grad).sum(0)
    scores = (diff[0] * total).sum(-1).detach().cpu().numpy().astype(np.float64)  # (T,)
    logit, base_logit = float(logits[0, target]), float(logits[1, target])
    n_tokens = clf.count_tokens(text)
    return Attribution(model=clf.name, tokens=tok.convert_ids_to_tokens(ids[0].tolist()), scores=scores,
                       target=target, labels=list(clf.labels), probs=softmax(logits[0]), logit=logit,
                       baseline_logit=base_logit, delta=float(scores.sum() - (logit - base_logit)),
                       n_steps=int(n_steps), n_truncated=max(0, n_tokens - clf.max_length),
                       seconds=time.perf_counter() - t0, text=text,
                       spans=token_spans(tok, text, clf.max_length, clf.truncation))


# ----------------------------------------------------------------------------- comparing two explanations


def content_mask(tokens: Sequence[str]) -> np.ndarray:
    """(T,) True for the tokens of the text itself ([CLS], [SEP], [PAD] score 0 by construction)."""
    return np.array([t not in SPECIAL for t in tokens], dtype=bool)


def agreement(a: Attribution, b: Attribution, k: int = TOP_K) -> dict[str, float]:
    """How far two explanations of the same text agree, over the text's own tokens, or over its words when the two
    models split it into different tokens (``unit``: each model's token scores summed per word by character offset).

    ``spearman``: rank correlation of the signed scores (1: same order of evidence; NaN under two tokens).
    ``top_k_overlap``: the share of the ``k`` tokens (words) with the largest ``|score|`` that both pick.
    ``n_tokens``: how many tokens (words) were compared.

    Raises:
        InputError: different tokens and no character offsets to line them up (a slow tokenizer).
    """
    if list(a.tokens) == list(b.tokens):
        keep = content_mask(a.tokens)
        return {**_rank_agreement(a.scores[keep], b.scores[keep], k), "unit": "tokens"}
    if a.spans is None or b.spans is None or a.text != b.text or len(a.spans) != len(a.tokens) \
            or len(b.spans) != len(b.tokens):
        raise InputError("The two models split this text into different tokens and one tokenizer gives no character "
                         "offsets to line them up with, so their explanations cannot be compared here.")
    # Different tokenizers: each model's token scores summed per word of the text (by character offsets), then the
    # words both models read (a longer cut may drop some) compared.
    wa, wb = word_scores(a), word_scores(b)
    common = [w for w in wa if w in wb]
    return {**_rank_agreement(np.array([wa[w] for w in common]), np.array([wb[w] for w in common]), k),
            "unit": "words"}


def word_scores(attr: Attribution) -> dict[tuple[int, int], float]:
    """The text's words (character spans of whitespace-separated runs) with the sum of the scores of the tokens
    that start in them; words the model did not read (cut by truncation) are left out."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", attr.text)]
    starts = [w[0] for w in words]
    out: dict[tuple[int, int], float] = {}
    for span, score in zip(attr.spans, attr.scores):
        if span is None:
            continue  # a special token
        s, e = span
        while s < e and attr.text[s].isspace():  # byte-level BPE counts the space before a word as its own
            s += 1
        i = bisect.bisect_right(starts, s) - 1
        if i >= 0 and s < words[i][1]:
            out[words[i]] = out.get(words[i], 0.0) + float(score)
    return out


def _rank_agreement(sa: np.ndarray, sb: np.ndarray, k: int) -> dict[str, float]:
    n = len(sa)
    rho = float("nan")
    if n >= 2 and np.ptp(sa) > 0 and np.ptp(sb) > 0:
        rho = float(spearmanr(sa, sb).statistic)
    k = max(1, min(int(k), n)) if n else 0
    overlap = float("nan")
    if k:
        top_a = set(np.argsort(-np.abs(sa), kind="stable")[:k].tolist())
        top_b = set(np.argsort(-np.abs(sb), kind="stable")[:k].tolist())
        overlap = len(top_a & top_b) / k
    return {"spearman": rho, "top_k_overlap": overlap, "k": k, "n_tokens": n}


def agreement_row(index: int, t_attr: Attribution, s_attr: Attribution, label: int | None, k: int = TOP_K) -> dict:
    """One row of the sample table: the agreement of two explanations of test text ``index`` and who was right."""
    return {"row": int(index), **agreement(t_attr, s_attr, k), "explained_class": t_attr.target_label,
            "teacher_pred": t_attr.labels[t_attr.predicted], "student_pred": s_attr.labels[s_attr.predicted],
            "true_label": None if label is None else t_attr.labels[int(label)],
            "student_agrees": t_attr.predicted == s_attr.predicted,
            "teacher_delta": t_attr.delta, "student_delta": s_attr.delta}


def sample_rows(n_total: int, n: int, seed: int = 0) -> np.ndarray:
    """(min(n, n_total),) sorted row indices drawn without replacement, the same for the same seed."""
    n = max(0, min(int(n), int(n_total)))
    return np.sort(np.random.default_rng(seed).choice(int(n_total), size=n, replace=False))


def agreement_over_texts(teacher: TextClassifier, student: TextClassifier, texts: Sequence[str],
                         labels: Sequence[int] | None = None, rows: Sequence[int] | None = None,
                         n_steps: int = N_STEPS, k: int = TOP_K,
                         progress: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Agreement of teacher and student explanations over texts: both explain the teacher's predicted class.

    Returns:
        One row per text (``agreement_row``'s columns).
    """
    out = []
    for i, text in enumerate(texts):
        if progress:
            progress(i / max(1, len(texts)), f"Explaining text {i + 1} of {len(texts)}…")
        t = integrated_gradients(teacher, text, None, n_steps)
        s = integrated_gradients(student, text, t.target, n_steps)
        out.append(agreement_row(rows[i] if rows is not None else i, t, s, None if labels is None else labels[i], k))
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- attention rollout


def attention_rollout(attentions: np.ndarray, residual: bool = True) -> np.ndarray:
    """Attention rollout (Abnar and Zuidema 2020): how much each token's final vector draws on each input token.

    Each layer's attention is averaged over heads, mixed half and half with the identity for the residual
    connection, renormalised, and the layers multiplied from the first up.

    Args:
        attentions: (L, H, T, T) one text's attention (rows sum to 1).
    Returns:
        (T, T) rollout; row 0 is what [CLS], which the classifier reads, gathered from each token.
    """
    a = np.asarray(attentions, dtype=np.float64)
    if a.ndim != 4 or a.shape[2] != a.shape[3]:
        raise ValueError(f"attentions must be (layers, heads, T, T), got {a.shape}")
    eye = np.eye(a.shape[-1])
    roll = eye
    for layer in a.mean(1):  # (T, T) per layer, first to last
        m = 0.5 * layer + 0.5 * eye if residual else layer
        m = m / m.sum(-1, keepdims=True)
        roll = m @ roll  # (T, T)
    return roll


# ----------------------------------------------------------------------------- speed, for the bench


def news_text(run_dir: Path, clf: TextClassifier, n_tokens: int = 50) -> str:
    """The run's test text whose length is closest to ``n_tokens`` (a news-length text for AG News)."""
    from ..runs import PREDICTIONS_FILE

    path = Path(run_dir) / PREDICTIONS_FILE
    texts = list(pd.read_parquet(path, columns=["text"])["text"][:300]) if path.is_file() else []
    if not texts:
        return ("Stocks rallied on Friday after the central bank said it would hold interest rates, lifting "
                "shares of banks and oil companies; analysts expect the rally to continue next week as "
                "quarterly earnings reports from the largest technology firms arrive.")
    return min(texts, key=lambda t: abs(clf.count_tokens(t) - n_tokens))


def time_integrated_gradients(run_dir: Path, kinds: Sequence[str] = ("teacher", "student"), text: str | None = None,
                              n_steps: int = N_STEPS, repeats: int = 5) -> dict[str, dict]:
    """Seconds for the integrated gradients of one text, per model (median of ``repeats`` after one warm-up).

    Uses torch's current thread count (reported). Returns ``{kind: {"median_s", "min_s", "n_tokens",
    "n_steps", "threads"}}``; the text is a test text of about 50 tokens unless given.
    """
    from ..runs import model_dir

    out = {}
    for kind in kinds:
        clf = TextClassifier.load(model_dir(run_dir, kind))
        text_k = text or news_text(run_dir, clf)
        integrated_gradients(clf, text_k, None, n_steps)  # warm-up: one-off allocations
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            integrated_gradients(clf, text_k, None, n_steps)
            times.append(time.perf_counter() - t0)
        out[kind] = {"median_s": statistics.median(times), "min_s": min(times),
                     "n_tokens": min(clf.count_tokens(text_k), clf.max_length), "n_steps": n_steps,
                     "threads": torch.get_num_threads()}
    return out

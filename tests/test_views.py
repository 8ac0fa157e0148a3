"""Unit tests of ``distill_core.views``: the pure functions the pages draw with, checked as data (no Streamlit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distill_core.errors import InputError, RunError
from distill_core.ship.inference import AttentionResult, Prediction
from distill_core.views import attention as av
from distill_core.views import curves as cv
from distill_core.views import live as lv
from distill_core.views import overview as ov


def softmax_rows(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def fake_attention(tokens: list[str], layers: int = 3, heads: int = 2, seed: int = 0) -> AttentionResult:
    """Random row-stochastic attention (L, H, T, T) for ``tokens``."""
    rng = np.random.default_rng(seed)
    att = softmax_rows(rng.normal(size=(layers, heads, len(tokens), len(tokens)))).astype(np.float32)
    return AttentionResult(tokens=tokens, attentions=att, probs=np.array([0.7, 0.2, 0.1]), n_truncated=0)


TOKENS = ["[CLS]", "stocks", "rallied", ",", "then", "fell", ".", "[SEP]"]


# ----------------------------------------------------------------------------- attention formatting


def test_attention_matrix_picks_layer_and_head_or_mean():
    att = fake_attention(TOKENS).attentions  # (3, 2, 8, 8)
    np.testing.assert_allclose(av.attention_matrix(att, layer=1, head=0), att[1, 0])
    np.testing.assert_allclose(av.attention_matrix(att, layer=-1, head=None), att[2].mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="out of range for a model with 3 layers"):
        av.attention_matrix(att, layer=3)
    with pytest.raises(ValueError, match="head 2 is out of range for 2 heads"):
        av.attention_matrix(att, layer=0, head=2)


@pytest.mark.parametrize("shape, fix", [
    ((3, 1, 2, 8, 8), "drop the batch axis"),
    ((2, 8, 8), "must be \\(layers, heads, T, T\\)"),
    ((3, 2, 8, 7), "square over tokens"),
])
def test_check_attention_wrong_shapes_say_how_to_fix(shape, fix):
    with pytest.raises(ValueError, match=fix):
        av.check_attention(np.zeros(shape))


def test_check_attention_tokens_must_match():
    with pytest.raises(ValueError, match="7 tokens but attention is over 8"):
        av.check_attention(np.zeros((1, 1, 8, 8)), TOKENS[:-1])


def test_keep_mask_hides_special_tokens_and_punctuation():
    assert av.keep_mask(TOKENS, hide=False).all()
    kept = [t for t, k in zip(TOKENS, av.keep_mask(TOKENS, hide=True)) if k]
    assert kept == ["stocks", "rallied", "then", "fell"]
    assert av.is_punctuation("##.") and av.is_punctuation("...") and not av.is_punctuation("u.s")


def test_drop_tokens_renormalises_rows():
    m = av.attention_matrix(fake_attention(TOKENS).attentions, -1)
    tokens, sub = av.drop_tokens(TOKENS, m, av.keep_mask(TOKENS, True))
    assert tokens == ["stocks", "rallied", "then", "fell"] and sub.shape == (4, 4)
    np.testing.assert_allclose(sub.sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="Nothing left to show"):
        av.drop_tokens(["[CLS]", "."], np.eye(2), np.zeros(2, bool))


def test_attention_view_defaults_hide_and_cap():
    res = fake_attention(TOKENS)
    v = av.attention_view(res)  # last layer, mean of heads
    assert (v.layer, v.head, v.n_layers, v.n_heads) == (2, None, 3, 2)
    np.testing.assert_allclose(v.matrix, res.attentions[2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(v.cls_row, v.matrix[0], rtol=1e-6)  # [CLS] is the first query
    assert v.describe() == "layer 3/3, mean of heads"

    hidden = av.attention_view(res, layer=0, head=1, hide=True)
    assert "[CLS]" not in hidden.tokens and hidden.cls_row.shape == (4,)
    np.testing.assert_allclose(hidden.cls_row.sum(), 1.0, rtol=1e-5)

    capped = av.attention_view(res, max_tokens=5)
    assert len(capped.tokens) == 5 and capped.matrix.shape == (5, 5) and capped.n_capped == 3


def test_aligned_teacher_layer_uses_the_layer_map_else_relative_depth():
    assert av.aligned_teacher_layer(1, [0, 2], teacher_layers=4, student_layers=2) == (2, True)
    assert av.aligned_teacher_layer(2, None, teacher_layers=12, student_layers=6) == (5, False)
    assert av.aligned_teacher_layer(5, None, teacher_layers=12, student_layers=6) == (11, False)
    with pytest.raises(ValueError, match="has 3 entries for 2 student layers"):
        av.aligned_teacher_layer(0, [0, 1, 2], 4, 2)


def test_difference_needs_the_same_tokens():
    a = av.attention_view(fake_attention(TOKENS, seed=1))
    b = av.attention_view(fake_attention(TOKENS, seed=2))
    np.testing.assert_allclose(av.difference_matrix(a, b), a.matrix - b.matrix)
    c = av.attention_view(fake_attention(TOKENS[:-1] + ["[PAD]"], seed=2))
    with pytest.raises(ValueError, match="split this text into different tokens"):
        av.difference_matrix(a, c)


def test_attention_figures_share_one_colour_scale_and_export_png():
    a = av.attention_view(fake_attention(TOKENS, seed=1))
    b = av.attention_view(fake_attention(TOKENS, seed=2), layer=0)
    fig = av.attention_pair_figure([a, b], ["teacher", "student"])
    assert fig.layout.coloraxis.cmax == pytest.approx(max(a.matrix.max(), b.matrix.max()))
    assert all(t.coloraxis == "coloraxis" for t in fig.data)
    assert list(fig.layout.xaxis.ticktext) == TOKENS  # repeated tokens stay apart: positions as tick values
    assert av.attention_png([a, b], ["t", "s"]).startswith(b"\x89PNG")
    assert av.cls_png([a, b], ["t", "s"], ["#000", "#f00"]).startswith(b"\x89PNG")
    assert "Sports" in av.view_title("Teacher", a, ["Sports", "World", "Business"])


# ----------------------------------------------------------------------------- overview tables


RESULTS = {
    "label_names": ["a", "b"],
    "test_rows": 10,
    "models": {
        "teacher": {"accuracy": 0.9, "macro_f1": 0.89, "parameters": 100, "dir_size_bytes": 4_000_000, "layers": 4,
                    "per_class": {"a": {"f1-score": 0.9}, "b": {"f1-score": 0.88}}},
        "student": {"accuracy": 0.81, "macro_f1": 0.8, "parameters": 60, "dir_size_bytes": 2_000_000, "layers": 2,
                    "accuracy_retention": 0.9, "agreement_with_teacher": 0.85,
                    "per_class": {"a": {"f1-score": 0.8}, "b": {"f1-score": 0.8}}},
        "baseline": {"accuracy": 0.72, "macro_f1": 0.7, "parameters": 60, "size_bytes": 2_000_000, "layers": 2,
                     "per_class": {"a": {"f1-score": 0.7}, "b": {"f1-score": 0.7}}},
    },
}
BENCH = {"models": {
    "teacher": {"latency_ms": {"median_len": {"p50": 20.0, "p95": 30.0}}, "throughput_texts_per_s": 50},
    "student": {"latency_ms": {"median_len": {"p50": 10.0, "p95": 15.0}}, "throughput_texts_per_s": 100},
    "student_int8": {"latency_ms": {"median_len": {"p50": 5.0}}, "accuracy": 0.8, "macro_f1": 0.79,
                     "parameters": 60, "size_bytes": 1_000_000},
}}


def test_overview_table_retention_and_size_ratio():
    t = ov.overview_table(RESULTS)
    assert list(t.index) == ["teacher", "student", "baseline"]
    assert t.loc["student", "Accuracy retention (% of teacher)"] == pytest.approx(90.0)
    assert t.loc["baseline", "Accuracy retention (% of teacher)"] == pytest.approx(80.0)  # computed when absent
    assert t.loc["student", "Size (% of teacher)"] == pytest.approx(50.0)
    assert t.loc["teacher", "Size on disk (MB)"] == pytest.approx(4.0)
    assert "Latency p50 (ms)" not in t
    with pytest.raises(RunError, match="lists no models"):
        ov.overview_table({"models": {}})


def test_overview_table_with_bench_adds_speed_and_the_int8_row():
    t = ov.overview_table(RESULTS, BENCH)
    assert t.loc["student", "Speed-up vs teacher"] == pytest.approx(2.0)
    assert t.loc["student_int8", "Speed-up vs teacher"] == pytest.approx(4.0)
    assert t.loc["student_int8", "Size (% of teacher)"] == pytest.approx(25.0)
    assert pd.isna(t.loc["baseline", "Latency p50 (ms)"])  # not benchmarked: left empty, not guessed
    assert len(ov.overview_figure(t).data) >= 4


def test_per_class_f1_in_label_order():
    f1 = ov.per_class_f1(RESULTS)
    assert list(f1.index) == ["a", "b"] and f1.loc["b", "Teacher"] == 0.88


# ----------------------------------------------------------------------------- curves


def test_ema_is_bias_corrected_and_skips_nans():
    np.testing.assert_allclose(cv.ema([1.0, 2.0, 3.0], 0.0), [1, 2, 3])
    out = cv.ema([2.0, 2.0, np.nan, 2.0], 0.9)
    assert out[0] == pytest.approx(2.0) and np.isnan(out[2]) and out[3] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        cv.ema([1.0], 1.0)


def test_curves_figure_checks_x_and_exports_png():
    df = pd.DataFrame({"step": [1, 2, 3], "examples_seen": [8, 16, 24], "elapsed_s": [0.1, 0.2, 0.3],
                       "train_loss": [1.0, 0.8, 0.7], "train_accuracy": [0.3, 0.5, 0.6], "learning_rate": [1e-3] * 3,
                       "kd_loss": [0.1, 0.1, 0.1], "ce_loss": [1.0, 0.9, 0.8]})
    val = pd.DataFrame({"step": [3], "examples_seen": [24], "elapsed_s": [0.3], "val_loss": [0.7], "val_accuracy": [0.6]})
    fig = cv.curves_figure({"student": df}, {"student": val}, x="examples_seen", smoothing=0.5)
    assert list(fig.data[0].x) == [8, 16, 24]
    with pytest.raises(ValueError, match="x must be one of"):
        cv.curves_figure({"student": df}, {}, x="time")
    assert cv.curves_png({"student": df}, {"student": val}).startswith(b"\x89PNG")
    assert len(cv.kd_components_figure(df).data) == 6  # raw + smoothed for kd, ce and the total


# ----------------------------------------------------------------------------- live classification


def test_examples_follow_the_label_names():
    assert lv.example_texts(["World", "Sports", "Business", "Sci/Tech"])[0].startswith("Kobe Bryant")
    assert lv.attention_default_text(["World", "Sports", "Business", "Sci/Tech"]).startswith("Costco faces")
    assert "film" in lv.example_texts(["neg", "pos"])[0]
    assert lv.example_texts(["noHate", "hate"]) == []
    assert lv.attention_default_text(["noHate", "hate"], test_texts=["first test text"]) == "first test text"


def test_split_batch_and_csv_texts():
    assert lv.split_batch("one\n\n  two \n") == ["one", "two"]
    texts, col = lv.texts_from_csv(b"id,Sentence\n1,hello\n2,\n3,world\n")
    assert (texts, col) == (["hello", "world"], "Sentence")
    with pytest.raises(InputError, match="No text column"):
        lv.texts_from_csv(b"a,b\n1,2\n")


def test_agreement_sentence():
    out = lambda kind, logits: Prediction(kind, ["x", "y"], np.array(logits, float), 1.0, 3, 0)  # noqa: E731
    assert lv.agreement([out("teacher", [2, 0]), out("student", [1, 0])])[0]
    ok, msg = lv.agreement([out("teacher", [2, 0]), out("student", [0, 1])])
    assert not ok and "Distilled student says **y**" in msg
    soft = out("teacher", [2, 0]).probs_at(4.0)
    assert soft[0] < out("teacher", [2, 0]).probs[0]  # a higher temperature flattens


# ----------------------------------------------------------------------------- texts shown


def test_display_text_decodes_entities_and_repairs_ones_that_lost_their_ampersand():
    from distill_core.views.text import display_text

    assert display_text("Linux fate #39;s wheels") == "Linux fate's wheels"
    assert display_text("Man Sought  #36;50M; episodes  #151; the") == "Man Sought $50M; episodes — the"
    assert display_text("deficient, quot;Judge quot; &lt;A&gt; AT&amp;T") == 'deficient, "Judge " <A> AT&T'
    assert display_text("Tom &quot;Hi&quot; &#39;x") == "Tom \"Hi\" 'x"
    assert display_text("C# 5; my quota; equot;") == "C# 5; my quota; equot;"  # no entity, unchanged


def test_sweep_cells_within_the_noise_are_drawn_as_the_baseline():
    from distill_core.views import sweep as sv

    cells = [{"temperature": 2.0, "alpha": 0.0, "val_accuracy": 0.8635, "val_macro_f1": 0.86, "val_agreement": 0.95},
             {"temperature": 1.0, "alpha": 0.9, "val_accuracy": 0.8717, "val_macro_f1": 0.87, "val_agreement": 0.96,
              "vs_baseline": {"metric": "accuracy", "estimate": 0.82, "low": -0.9, "high": 2.5}},
             {"temperature": 4.0, "alpha": 0.9, "val_accuracy": 0.90, "val_macro_f1": 0.90, "val_agreement": 0.97,
              "vs_baseline": {"metric": "accuracy", "estimate": 3.65, "low": 1.2, "high": 6.0}}]
    sweep = {"metric": "accuracy", "cells": cells, "grid": {"temperature": [1, 4], "alpha": [0.9]}}
    fig = sv.heatmap_figure(sweep, "val_accuracy")
    shade, values = fig.data[0].z, fig.data[0].customdata
    assert shade[0][0] == pytest.approx(0.8635) and values[0][0] == pytest.approx(0.8717)  # noise: the baseline's colour
    assert shade[0][1] == pytest.approx(0.90)  # a measurable gain keeps its colour
    assert "≈ baseline" in fig.data[0].text[0][0] and "≈" not in fig.data[0].text[0][1]
    assert fig.layout.xaxis.title.text.startswith("temperature T") and fig.layout.yaxis.title.text == "KD weight alpha"
    assert sv.noise_mask({**sweep, "cells": [{k: v for k, v in c.items() if k != "vs_baseline"} for c in cells]},
                         "val_accuracy", [0.9], [1.0, 4.0]) is None  # an old sweep file: no intervals to judge by


def test_latency_axis_follows_the_medians_not_one_slow_call():
    from distill_core.views import performance as pv

    lat = lambda p50, p95: {"median_len": {"p50": p50, "p95": p95}, "max_len": {"p50": 2 * p50, "p95": 2 * p95}}  # noqa
    bench = {"settings": {"median_tokens": 51, "max_length": 128},
             "models": {"teacher": {"latency_ms": lat(30.0, 190.0)}, "student": {"latency_ms": lat(15.0, 20.0)}}}
    fig = pv.latency_figure(bench)
    assert fig.layout.yaxis.range[1] == pytest.approx(1.6 * 60.0)  # not 380 ms: the bars stay readable


@pytest.mark.parametrize("n, stacked", [(12, False), (40, True)])
def test_attention_maps_titles_on_two_lines_and_long_texts_stacked(n, stacked):
    from distill_core.views import attention as av

    tokens = [f"w{i}" for i in range(n)]
    view = av.AttentionView(tokens=tokens, matrix=np.full((n, n), 1 / n), cls_row=None, layer=2, head=None,
                            n_layers=3, n_heads=4, n_total=n, n_capped=0)
    fig = av.attention_pair_figure([view, view], ["Teacher · layer 3/3, mean of heads · Sports 87%",
                                                  "Distilled student · layer 3/3, mean of heads · Sports 80%"])
    assert [a.text.split("<br>")[0] for a in fig.layout.annotations] == ["Teacher", "Distilled student"]
    domains = (fig.layout.xaxis.domain, fig.layout.xaxis2.domain)
    assert (domains[0] == domains[1]) is stacked  # one under the other: both the full width
    assert fig.layout.height >= (2 * (16 * n + 220) if stacked else 440)


def test_calibration_count_panels_share_one_range_and_thin_bins_are_faint():
    import pandas as pd

    from distill_core.views import calibration as cv

    rows = [{"model": k, "lower": lo, "upper": lo + 0.5, "accuracy": 1.0, "confidence": lo + 0.25, "count": c,
             "ece": 0.05} for k, counts in (("teacher", (1, 900)), ("student", (40, 90))) for lo, c in zip((0.0, 0.5), counts)]
    fig = cv.reliability_figure(pd.DataFrame(rows))
    ranges = {tuple(ax.range) for name, ax in fig.layout.to_plotly_json().items() if name.startswith("yaxis") and
              ax.get("type") == "log" for ax in [fig.layout[name]]}
    assert len(ranges) == 1  # one range for every model's counts
    teacher_bars = fig.data[0]
    assert list(teacher_bars.marker.opacity) == [0.25, 1.0]  # the one-text bin is faint

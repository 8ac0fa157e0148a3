"""The student is built from the teacher the way DistilBERT was; these equalities pin that down."""

import pytest
import torch

from distill_core.train.models import (
    ModelError, build_student_from_teacher, default_layer_map, describe, packaged_teacher_path,
)
from tiny_models import tiny_teacher

LABELS = ["a", "b", "c"]


@pytest.fixture()
def teacher():
    # 4 layers so that the default map (0, 2) skips layers; dropout off via eval().
    t = tiny_teacher(vocab_size=100, label_names=LABELS, num_hidden_layers=4).eval()
    # Make token_type_embeddings[0] clearly non-zero so that forgetting to fold it would fail the test.
    with torch.no_grad():
        t.bert.embeddings.token_type_embeddings.weight[0].normal_(0, 1.0)
    return t


def _inputs(b=3, t=9, vocab=100):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (b, t), generator=g)
    return ids


def test_default_layer_map_is_every_other_layer():
    assert default_layer_map(6) == [0, 2, 4]
    assert default_layer_map(12) == [0, 2, 4, 6, 8, 10]
    assert default_layer_map(4) == [0, 2]
    assert default_layer_map(6, 2) == [0, 3]


def test_student_shape_follows_teacher(teacher):
    s = build_student_from_teacher(teacher, LABELS)
    c = s.config
    assert (c.n_layers, c.dim, c.n_heads, c.hidden_dim, c.vocab_size) == (2, 32, 4, 37, 100)
    assert c.id2label == {0: "a", 1: "b", 2: "c"}
    assert c.distill_layer_map == [0, 2]
    assert describe(s)["parameters"] < describe(teacher)["parameters"]


@torch.no_grad()
def test_student_embeddings_equal_teacher_embeddings(teacher):
    s = build_student_from_teacher(teacher, LABELS).eval()
    ids = _inputs()
    t_emb = teacher.bert.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))  # (B, T, H)
    s_emb = s.distilbert.embeddings(ids)  # (B, T, H)
    torch.testing.assert_close(s_emb, t_emb, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_each_copied_layer_reproduces_its_teacher_layer(teacher):
    layer_map = [1, 3]
    s = build_student_from_teacher(teacher, LABELS, layer_map=layer_map).eval()
    h = torch.randn(2, 7, 32)  # the same hidden states into both
    for i, j in enumerate(layer_map):
        t_out = teacher.bert.encoder.layer[j](h)
        s_out = s.distilbert.transformer.layer[i](h)
        t_out = t_out[0] if isinstance(t_out, tuple) else t_out
        s_out = s_out[0] if isinstance(s_out, tuple) else s_out
        torch.testing.assert_close(s_out, t_out, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_whole_encoder_matches_teacher_when_student_keeps_every_layer(teacher):
    """With all 4 layers copied, the student's last hidden state equals the teacher's (mask included)."""
    s = build_student_from_teacher(teacher, LABELS, layer_map=[0, 1, 2, 3]).eval()
    ids = _inputs()
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    t_h = teacher.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    s_h = s.distilbert(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(s_h[mask.bool()], t_h[mask.bool()], atol=1e-4, rtol=1e-4)


def test_bad_layer_map_is_refused(teacher):
    with pytest.raises(ModelError, match="outside"):
        build_student_from_teacher(teacher, LABELS, layer_map=[0, 7])
    with pytest.raises(ModelError, match="entries"):
        build_student_from_teacher(teacher, LABELS, n_layers=3, layer_map=[0, 1])


def test_packaged_teacher_is_found_through_the_package():
    path = packaged_teacher_path()
    assert (path / "model.safetensors").is_file()
    assert "site-packages" in str(path) or "dist-packages" in str(path)

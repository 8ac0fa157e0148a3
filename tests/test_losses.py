import pytest
import torch
import torch.nn.functional as F

from distill_core.train.losses import cross_entropy, hidden_cosine_loss, kd_loss


def _logits(seed=0, b=6, c=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=g), torch.randint(0, c, (b,), generator=g)


def test_kd_term_is_zero_for_identical_logits():
    s, y = _logits()
    out = kd_loss(s, s.clone(), y, temperature=3.0, alpha=0.7)
    assert out.parts["kd_loss"].abs().item() < 1e-6
    # With the soft term at zero, the loss is the weighted hard term alone.
    assert torch.allclose(out.loss, 0.3 * F.cross_entropy(s, y), atol=1e-6)


def test_kd_is_positive_when_logits_differ():
    s, y = _logits(0)
    t, _ = _logits(1)
    assert kd_loss(s, t, y).parts["kd_loss"].item() > 0.01


def test_alpha_zero_equals_cross_entropy_value_and_gradient():
    s, y = _logits()
    t, _ = _logits(3)
    s1 = s.clone().requires_grad_(True)
    s2 = s.clone().requires_grad_(True)
    kd = kd_loss(s1, t, y, temperature=2.0, alpha=0.0).loss
    ce = F.cross_entropy(s2, y)
    kd.backward()
    ce.backward()
    assert torch.allclose(kd, ce)
    assert torch.allclose(s1.grad, s2.grad, atol=1e-7)


def test_t_squared_scaling_matches_manual_kl():
    s, y = _logits()
    t, _ = _logits(5)
    T = 4.0
    out = kd_loss(s, t, y, temperature=T, alpha=1.0)
    p_t = F.softmax(t / T, -1)
    manual = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean() * T**2
    assert torch.allclose(out.loss, manual, atol=1e-6)


def test_no_gradient_reaches_the_teacher():
    s, y = _logits()
    t = _logits(2)[0].requires_grad_(True)
    kd_loss(s.requires_grad_(True), t, y, alpha=1.0).loss.backward()
    assert t.grad is None


@pytest.mark.parametrize("kw", [{"temperature": 0.0}, {"alpha": 1.5}, {"alpha": -0.1}])
def test_bad_hyperparameters_raise(kw):
    s, y = _logits()
    with pytest.raises(ValueError):
        kd_loss(s, s, y, **kw)


def test_shape_mismatch_says_why():
    s, y = _logits(c=4)
    with pytest.raises(ValueError, match="label set"):
        kd_loss(s, torch.zeros(6, 3), y)


def test_cross_entropy_matches_torch():
    s, y = _logits()
    assert torch.allclose(cross_entropy(s, y).loss, F.cross_entropy(s, y))


def test_hidden_cosine_loss_ignores_padding():
    h = torch.randn(2, 5, 8)
    other = h.clone()
    other[:, 3:] = torch.randn(2, 2, 8)  # differ only at padded positions
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    assert hidden_cosine_loss(h, other, mask).item() < 1e-6
    assert hidden_cosine_loss(h, other, torch.ones(2, 5)).item() > 0.01

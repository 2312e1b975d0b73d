import pytest
import torch
import torch.nn.functional as F

from laser_ns.components.losses import (
    distillation_loss,
    label_volume_classification_loss,
    mean_cosine,
    minmax_normalize,
    self_cross_training_loss,
    self_training_loss,
    soft_cross_entropy,
    text_augmentation_loss,
)


def _cos(a, b):
    return sum(float(a[i] @ b[i] / (a[i].norm() * b[i].norm())) for i in range(a.shape[0])) / a.shape[0]


def test_mean_cosine_hand_case():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 3.0], [2.0, 2.0], [1.0, 1.0]])
    assert mean_cosine(a, b).item() == pytest.approx((0.0 + 1.0 + 2**-0.5) / 3, abs=1e-6)


def test_distillation_loss_value_and_stop_gradient():
    torch.manual_seed(0)
    rendered = torch.randn(8, 16, requires_grad=True)
    teacher = torch.randn(8, 16, requires_grad=True)
    loss = distillation_loss(rendered, teacher)
    assert loss.item() == pytest.approx(-_cos(teacher.detach(), rendered.detach()), abs=1e-6)
    loss.backward()
    assert teacher.grad is None and rendered.grad.abs().sum() > 0


def test_self_training_loss_has_gradients_on_both_sides():
    torch.manual_seed(0)
    ga = torch.randn(6, 8, requires_grad=True)
    go = torch.randn(6, 8, requires_grad=True)
    loss = self_training_loss(ga, go)
    assert loss.item() == pytest.approx(-_cos(ga.detach(), go.detach()), abs=1e-6)
    loss.backward()
    assert ga.grad.abs().sum() > 0 and go.grad.abs().sum() > 0


def test_self_cross_training_loss_weights_and_stop_gradients():
    torch.manual_seed(0)
    ga, go, fa, fo = (torch.randn(6, 8, requires_grad=True) for _ in range(4))
    loss = self_cross_training_loss(ga, go, fa, fo)
    d = [t.detach() for t in (ga, go, fa, fo)]
    expected = -(0.3 * (_cos(d[0], d[1]) + _cos(d[2], d[3])) / 2 + 0.7 * (_cos(d[2], d[1]) + _cos(d[0], d[3])) / 2)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert fo.grad is None  # stopgrad(Fo) in both of its terms
    assert all(t.grad.abs().sum() > 0 for t in (ga, go, fa))


def test_minmax_normalize_rows():
    x = torch.tensor([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]])
    torch.testing.assert_close(minmax_normalize(x), torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]]))


def test_text_augmentation_loss_matches_hand_written_formula():
    torch.manual_seed(0)
    n, c, d = 7, 4, 16
    ga, go = torch.randn(n, d), torch.randn(n, d)
    text = F.normalize(torch.randn(c, d), dim=-1)
    text_aug = F.normalize(torch.randn(c, d), dim=-1)

    rel = ga @ text.T  # [N, C]
    rel_aug = go @ text_aug.T
    per_pixel_target = torch.stack([(r - r.min()) / (r.max() - r.min()) for r in rel_aug])  # each pixel over classes
    per_class_target = torch.stack([(r - r.min()) / (r.max() - r.min()) for r in rel_aug.T])  # each class over pixels
    expected = -(_cos(rel, per_pixel_target) + _cos(rel.T, per_class_target)) / 2
    assert text_augmentation_loss(ga, go, text, text_aug).item() == pytest.approx(expected, abs=1e-6)


def test_text_augmentation_loss_minimum_is_minus_one():
    # With one-hot relevancies, min-max normalisation is the identity both per pixel and per class.
    text = torch.eye(3)
    features = torch.eye(3)
    assert text_augmentation_loss(features, features, text, text).item() == pytest.approx(-1.0)
    perturbed = features + 0.3 * torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert text_augmentation_loss(perturbed, features, text, text).item() > -0.99


def test_soft_cross_entropy_along_explicit_axis():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    target = torch.tensor([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]])
    per_row = [-(target[i] * torch.log_softmax(logits[i], dim=0)).sum() for i in range(2)]
    assert soft_cross_entropy(logits, target, dim=1).item() == pytest.approx(float(sum(per_row) / 2))
    # PyTorch's own soft-target cross-entropy agrees when the class axis is 1.
    assert soft_cross_entropy(logits, target, dim=1).item() == pytest.approx(F.cross_entropy(logits, target).item())
    with pytest.raises(ValueError, match="one shape"):
        soft_cross_entropy(logits, target[:1], dim=1)


def test_soft_cross_entropy_ignores_offsets_along_other_axis():
    # A per-row constant changes no softmax over classes: the class-axis loss must not move, the other must.
    torch.manual_seed(0)
    logits = torch.randn(5, 3)
    target = torch.softmax(torch.randn(5, 3), dim=1)
    shifted = logits + torch.arange(5.0)[:, None] * 2.0
    assert soft_cross_entropy(shifted, target, dim=1).item() == pytest.approx(soft_cross_entropy(logits, target, 1))
    target_t = torch.softmax(torch.randn(5, 3), dim=0)
    assert soft_cross_entropy(shifted, target_t, dim=0).item() != pytest.approx(
        soft_cross_entropy(logits, target_t, 0).item()
    )


def _reference_style_loss(label_scores, feats, text, tau):
    """What METHOD.md says the reference does: [B, h, w, C] straight into F.cross_entropy (class axis = h)."""
    n, c = label_scores.shape
    h = n // 2
    label = torch.log_softmax(label_scores / tau, dim=-1).reshape(1, h, 2, c)
    target = torch.softmax(F.normalize(feats, dim=-1) @ text.T / tau, dim=-1).reshape(1, h, 2, c)
    return F.cross_entropy(label, target)


def _loop_loss(label_scores, feats_list, text, tau):
    """Hand-written: per ray over classes, then per class over rays, for each feature set."""
    logits = label_scores / tau
    total = 0.0
    for feats in feats_list:
        cos = F.normalize(feats, dim=-1) @ F.normalize(text, dim=-1).T
        per_ray = [-(torch.softmax(cos[i] / tau, 0) * torch.log_softmax(logits[i], 0)).sum() for i in range(len(cos))]
        per_cls = [-(torch.softmax(cos[:, j] / tau, 0) * torch.log_softmax(logits[:, j], 0)).sum() for j in range(3)]
        total += float(sum(per_ray) / len(per_ray)) + float(sum(per_cls) / len(per_cls))
    return total


def test_label_volume_loss_matches_loop_and_not_the_reference_axis_misuse():
    torch.manual_seed(0)
    n, c, d, tau = 8, 3, 16, 0.2
    text = F.normalize(torch.randn(c, d), dim=-1)
    feats = [torch.randn(n, d) for _ in range(3)]
    label_scores = torch.randn(n, c) * 0.2
    loss = label_volume_classification_loss(label_scores, feats, text, tau=tau)
    assert loss.item() == pytest.approx(_loop_loss(label_scores, feats, text, tau), abs=1e-4)

    # The per-ray term alone, for one feature set, must not equal the reference's h-axis reading.
    target = torch.softmax(F.normalize(feats[0], dim=-1) @ text.T / tau, dim=1)
    ours = soft_cross_entropy(label_scores / tau, target, dim=1)
    assert abs(ours.item() - _reference_style_loss(label_scores, feats[0], text, tau).item()) > 1e-2
    # And its gradient must be invariant to per-ray offsets of the label scores (the class axis is C).
    scores = label_scores.clone().requires_grad_(True)
    soft_cross_entropy((scores + torch.arange(n, dtype=torch.float32)[:, None]) / tau, target, dim=1).backward()
    grad_shifted = scores.grad.clone()
    scores.grad = None
    soft_cross_entropy(scores / tau, target, dim=1).backward()
    torch.testing.assert_close(grad_shifted, scores.grad)


def test_label_volume_loss_is_stationary_at_its_target():
    torch.manual_seed(0)
    n, c, d, tau = 10, 4, 16, 0.2
    text = F.normalize(torch.randn(c, d), dim=-1)
    feats = torch.randn(n, d)
    target_scores = F.normalize(feats, dim=-1) @ text.T  # label distributions equal the targets both ways

    at_target = target_scores.clone().requires_grad_(True)
    loss_at_target = label_volume_classification_loss(at_target, [feats], text, tau=tau)
    loss_at_target.backward()
    assert at_target.grad.abs().max().item() < 1e-6

    elsewhere = (target_scores + 0.3 * torch.randn(n, c)).requires_grad_(True)
    loss_elsewhere = label_volume_classification_loss(elsewhere, [feats], text, tau=tau)
    loss_elsewhere.backward()
    assert elsewhere.grad.abs().max().item() > 1e-3
    assert loss_elsewhere.item() > loss_at_target.item()


def test_label_volume_loss_gradient_routing():
    torch.manual_seed(0)
    text = F.normalize(torch.randn(3, 8), dim=-1)
    scores = torch.randn(6, 3, requires_grad=True)
    feats = torch.randn(6, 8, requires_grad=True)
    label_volume_classification_loss(scores, [feats], text).backward()
    assert scores.grad.abs().sum() > 0 and feats.grad is None  # targets detached by default

    scores.grad = None
    label_volume_classification_loss(scores, [feats], text, detach_targets=False).backward()
    assert scores.grad.abs().sum() > 0 and feats.grad.abs().sum() > 0

    with pytest.raises(ValueError, match="at least one feature set"):
        label_volume_classification_loss(scores, [], text)


def test_label_tau_scales_the_label_logits():
    torch.manual_seed(0)
    text = F.normalize(torch.randn(3, 8), dim=-1)
    scores, feats = torch.randn(6, 3) * 0.1, torch.randn(6, 8)
    default = label_volume_classification_loss(scores, [feats], text, tau=0.2)
    explicit = label_volume_classification_loss(scores, [feats], text, tau=0.2, label_tau=0.2)
    other = label_volume_classification_loss(scores, [feats], text, tau=0.2, label_tau=1.0)
    assert default.item() == pytest.approx(explicit.item())
    assert default.item() != pytest.approx(other.item())

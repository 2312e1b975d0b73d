"""The label volume: its learned class-logit scale, and checkpoints saved before the scale existed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from laser_ns.components.losses import label_volume_classification_loss
from laser_ns.fields.language_field import HashGridConfig, LabelVolume, LabelVolumeConfig

TAU = 0.2


def small_label_volume() -> LabelVolume:
    grid = HashGridConfig(num_levels=4, base_res=4, max_res=32, log2_hashmap_size=12)
    return LabelVolumeConfig(grid=grid).setup(
        aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), spatial_distortion=None, implementation="torch"
    )


def fit(label_volume: LabelVolume, mode: str, learn_scale: bool, steps: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """A short optimisation on 4 classes (one per quadrant of x, y); returns (true-class probability, accuracy).

    Features start at their class's text embedding plus noise; in 'mutual' mode they are free parameters held
    near the teacher by a distillation term, as the model's feature field is. Learning rates are the model's:
    0.02 for the grid and the log-scale (language_grids), 1e-3 for the linear layer (laser-lite's networks).
    """
    gen = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(4, 512, generator=gen), dim=-1)  # hashed-like: near-orthogonal classes
    points = torch.rand(128, 3, generator=gen) * 2 - 1
    classes = (points[:, 0] > 0).long() * 2 + (points[:, 1] > 0).long()
    teacher = F.normalize(text[classes] + 0.02 * torch.randn(128, 512, generator=gen), dim=-1)
    feats = teacher.clone().requires_grad_(mode == "mutual")
    label_volume.log_scale.requires_grad_(learn_scale)
    groups = [
        {"params": list(label_volume.grid.parameters()) + [label_volume.log_scale], "lr": 0.02},
        {"params": list(label_volume.linear.parameters()), "lr": 1e-3},
    ]
    if mode == "mutual":
        groups.append({"params": [feats], "lr": 0.02})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    for _ in range(steps):
        distribution = torch.softmax(label_volume(points), dim=-1)  # every ray: one sample of weight 1
        logits = label_volume.class_logits(distribution, text, TAU)
        loss = label_volume_classification_loss(logits, [feats], text, tau=TAU, mode=mode)  # type: ignore[arg-type]
        if mode == "mutual":
            loss = loss - F.cosine_similarity(feats, teacher, dim=-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        probs = torch.softmax(label_volume.class_logits(torch.softmax(label_volume(points), -1), text, TAU), -1)
    return probs[torch.arange(128), classes], (probs.argmax(-1) == classes).float().mean()


@pytest.mark.parametrize("mode", ["mutual", "detached"])
def test_learned_scale_lets_the_label_volume_be_confident(mode):
    torch.manual_seed(0)
    true_prob, accuracy = fit(small_label_volume(), mode, learn_scale=True)
    assert accuracy.item() > 0.9
    assert true_prob.median().item() > 0.9  # one class of 4 at > 0.9


def test_without_the_scale_the_label_volume_cannot_be_confident():
    """log_scale frozen at 0 (logits s @ T^T / tau, as before the scale): the same fit stays near uniform."""
    torch.manual_seed(0)
    unscaled_prob, _ = fit(small_label_volume(), "detached", learn_scale=False)
    assert unscaled_prob.max().item() < 0.5


def test_checkpoint_without_log_scale_loads_with_the_old_scale():
    old = small_label_volume().state_dict()
    del old["log_scale"]
    label_volume = small_label_volume()
    with torch.no_grad():
        label_volume.log_scale.fill_(3.0)
    label_volume.load_state_dict(old)  # strict
    assert label_volume.log_scale.item() == 0.0
    assert label_volume.logit_scale().item() == pytest.approx(1.0)
    text, dist = F.normalize(torch.randn(3, 512), dim=-1), torch.softmax(torch.randn(5, 512), dim=-1)
    torch.testing.assert_close(label_volume.class_logits(dist, text, TAU), dist @ text.T / TAU)


def test_log_scale_is_capped():
    label_volume = small_label_volume()
    with torch.no_grad():
        label_volume.log_scale.fill_(500.0)  # exp(500) overflows float32
    assert torch.isfinite(label_volume.logit_scale())

"""The label volume: rendering per sample or per ray, its learned class-logit scale, and old checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from laser_ns.components.losses import label_volume_classification_loss
from laser_ns.fields.language_field import HashGridConfig, LabelVolume, LabelVolumeConfig
from laser_ns.model import LaserModelConfig

TAU = 0.2


STRENGTH = LaserModelConfig().label_volume_strength


def small_label_volume(render: str = "per_ray", max_scale: float = LabelVolumeConfig.max_scale) -> LabelVolume:
    grid = HashGridConfig(num_levels=4, base_res=4, max_res=32, log2_hashmap_size=12)
    return LabelVolumeConfig(grid=grid, render=render, max_scale=max_scale).setup(  # type: ignore[arg-type]
        aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), spatial_distortion=None, implementation="torch"
    )


def fit(label_volume: LabelVolume, mode: str, learn_scale: bool, steps: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """A short optimisation on 4 classes (one per quadrant of x, y); returns (true-class probability, accuracy).

    Features start at their class's text embedding plus noise; in 'balanced' mode they are free parameters held
    near the teacher by a distillation term, as the model's feature field is. Learning rates are the model's:
    0.02 for the grid and the log-scale (language_grids), 1e-3 for the linear layer (laser-lite's networks).
    """
    gen = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(4, 512, generator=gen), dim=-1)  # hashed-like: near-orthogonal classes
    points = torch.rand(128, 3, generator=gen) * 2 - 1
    classes = (points[:, 0] > 0).long() * 2 + (points[:, 1] > 0).long()
    teacher = F.normalize(text[classes] + 0.02 * torch.randn(128, 512, generator=gen), dim=-1)
    feats = teacher.clone().requires_grad_(mode == "balanced")
    label_volume.log_scale.requires_grad_(learn_scale)
    groups = [
        {"params": list(label_volume.grid.parameters()) + [label_volume.log_scale], "lr": 0.02},
        {"params": list(label_volume.linear.parameters()), "lr": 1e-3},
    ]
    if mode == "balanced":
        groups.append({"params": [feats], "lr": 0.02})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    for _ in range(steps):
        distribution = torch.softmax(label_volume(points), dim=-1)  # every ray: one sample of weight 1
        logits = label_volume.class_logits(distribution, text, TAU)
        loss = label_volume_classification_loss(  # at the model's strength (Adam makes it no matter to the volume)
            logits,
            [feats],
            text,
            tau=TAU,
            mode=mode,
            strength=STRENGTH,  # type: ignore[arg-type]
        )
        if mode == "balanced":
            loss = loss - F.cosine_similarity(feats, teacher, dim=-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        probs = torch.softmax(label_volume.class_logits(torch.softmax(label_volume(points), -1), text, TAU), -1)
    return probs[torch.arange(128), classes], (probs.argmax(-1) == classes).float().mean()


@pytest.mark.parametrize("mode", ["balanced", "detached"])
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


def test_a_lower_scale_cap_keeps_the_class_distribution_soft():
    text, dist = F.normalize(torch.randn(3, 512), dim=-1), torch.softmax(4 * torch.randn(5, 512), dim=-1)
    capped, default = small_label_volume(max_scale=100.0), small_label_volume()
    with torch.no_grad():
        capped.log_scale.fill_(20.0)
        default.log_scale.fill_(20.0)
    assert capped.logit_scale().item() == pytest.approx(100.0)
    assert default.logit_scale().item() == pytest.approx(1e4)
    torch.testing.assert_close(capped.class_logits(dist, text, TAU), 100.0 * (dist @ text.T) / TAU)
    margin = lambda logits: (logits.max(-1).values - logits.min(-1).values).max().item()  # noqa: E731
    assert margin(capped.class_logits(dist, text, TAU)) < margin(default.class_logits(dist, text, TAU)) / 50


@pytest.mark.parametrize("max_scale", [0.5, 0.0, -1.0, float("inf"), float("nan")])
def test_a_scale_cap_below_one_or_not_finite_is_refused(max_scale):
    with pytest.raises(ValueError, match=r"--pipeline.model.label-volume.max-scale"):
        small_label_volume(max_scale=max_scale)


def ray_samples(num_rays: int = 5, seed: int = 0):
    """Samples of ``num_rays`` rays: ray 0 has one sample, ray 1 none, the others several, in row-major order."""
    gen = torch.Generator().manual_seed(seed)
    counts = [1, 0] + [int(c) for c in torch.randint(2, 7, (num_rays - 2,), generator=gen)]
    ray_index = torch.repeat_interleave(torch.arange(num_rays), torch.tensor(counts))
    positions = torch.rand(len(ray_index), 3, generator=gen) * 1.8 - 0.9
    weights = torch.rand(len(ray_index), 1, generator=gen) * 0.3
    return positions, weights, ray_index, num_rays


def test_per_sample_render_is_the_papers_formula_exactly():
    """'per_sample' is the code as it was before the option: sum_s w_s sigmoid(W g_s + b), bit for bit."""
    label_volume = small_label_volume("per_sample")
    positions, weights, ray_index, num_rays = ray_samples()
    rendered = label_volume.render(positions, weights, ray_index, num_rays)
    old = torch.zeros(num_rays, 512).index_add(0, ray_index, weights * label_volume(positions))
    assert torch.equal(rendered, old)


def test_per_ray_render_is_the_sigmoid_of_the_mean_encoding():
    """'per_ray': A sigmoid(W g_bar + b) per ray; equal to 'per_sample' for a one-sample ray, 0 for an empty ray."""
    label_volume = small_label_volume("per_ray")
    with torch.no_grad():
        label_volume.linear.bias.normal_()  # a zero bias would hide a wrongly weighted one
        label_volume.grid.encoding.hash_table.normal_()  # samples of one ray with clearly different encodings
    positions, weights, ray_index, num_rays = ray_samples()
    rendered = label_volume.render(positions, weights, ray_index, num_rays)
    assert rendered.shape == (num_rays, 512)
    encodings = label_volume.grid(positions)
    for ray in range(num_rays):
        mine = ray_index == ray
        w = weights[mine]
        if not mine.any():
            assert torch.equal(rendered[ray], torch.zeros(512))
            continue
        mean = (w * encodings[mine]).sum(0) / w.sum()
        expected = w.sum() * torch.sigmoid(label_volume.linear(mean))
        torch.testing.assert_close(rendered[ray], expected, atol=1e-6, rtol=1e-5)
    one_sample = ray_index == 0
    per_sample = weights[one_sample] * label_volume(positions[one_sample])
    torch.testing.assert_close(rendered[0], per_sample[0], atol=1e-6, rtol=1e-5)
    # several samples with different encodings: the sigmoid of the mean is not the mean of the sigmoids
    paper = small_label_volume("per_sample")
    paper.load_state_dict(label_volume.state_dict())
    assert not torch.allclose(rendered[2:], paper.render(positions, weights, ray_index, num_rays)[2:], atol=1e-4)


@pytest.mark.parametrize("render", ["per_ray", "per_sample"])
def test_gradients_reach_the_label_volume(render):
    label_volume = small_label_volume(render)
    positions, weights, ray_index, num_rays = ray_samples()
    text = F.normalize(torch.randn(3, 512), dim=-1)
    distribution = torch.softmax(label_volume.render(positions, weights, ray_index, num_rays), dim=-1)
    label_volume.class_logits(distribution, text, TAU).logsumexp(-1).sum().backward()
    for name, param in label_volume.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_unknown_render_is_refused():
    with pytest.raises(ValueError, match="per_ray"):
        small_label_volume("per_pixel")

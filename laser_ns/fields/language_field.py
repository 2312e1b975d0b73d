"""The language fields: a dense-CLIP feature field and the label volume, each on its own hash grid.

Both read positions only (no view direction) and own their spatial grids, so that language losses can never
reach the density or colour of the radiance field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from nerfstudio.configs.base_config import InstantiateConfig
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.field_components.mlp import MLP
from nerfstudio.field_components.spatial_distortions import SpatialDistortion
from torch import Tensor, nn


@dataclass
class HashGridConfig(InstantiateConfig):
    """A multi-resolution hash grid over the (contracted) scene."""

    _target: type = field(default_factory=lambda: HashGrid)
    num_levels: int = 12
    """Number of resolution levels."""
    base_res: int = 16
    """Resolution of the coarsest level."""
    max_res: int = 512
    """Resolution of the finest level."""
    log2_hashmap_size: int = 19
    """Log2 of the number of entries per level."""
    features_per_level: int = 2
    """Features stored per entry."""


class HashGrid(nn.Module):
    """Positions -> hash-grid features, with nerfacto's scene contraction and normalisation."""

    def __init__(
        self,
        config: HashGridConfig,
        aabb: Float[Tensor, "2 3"],
        spatial_distortion: SpatialDistortion | None,
        implementation: Literal["tcnn", "torch"],
    ) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone().float())
        self.spatial_distortion = spatial_distortion
        self.encoding = HashEncoding(
            num_levels=config.num_levels,
            min_res=config.base_res,
            max_res=config.max_res,
            log2_hashmap_size=config.log2_hashmap_size,
            features_per_level=config.features_per_level,
            implementation=implementation,
        )
        self.out_dim = config.num_levels * config.features_per_level

    def forward(self, positions: Float[Tensor, "N 3"]) -> Float[Tensor, "N F"]:
        if self.spatial_distortion is not None:
            # contraction maps everything into a radius-2 ball; shift to [0, 1] like nerfacto
            positions = (self.spatial_distortion(positions) + 2.0) / 4.0
        else:
            positions = SceneBox.get_normalized_positions(positions, self.aabb)
        return self.encoding(positions.clamp(0.0, 1.0)).float()


@dataclass
class LanguageFieldConfig(InstantiateConfig):
    """Dense-CLIP feature field: its hash grid, then a small SiLU MLP to the CLIP dimension."""

    _target: type = field(default_factory=lambda: LanguageField)
    grid: HashGridConfig = field(default_factory=HashGridConfig)
    """Spatial encoding of the feature field."""
    hidden_dim: int = 128
    """Width of the MLP's hidden layers."""
    num_hidden_layers: int = 2
    """Hidden layers of the MLP (the reference uses 2 of 128, SiLU)."""


class LanguageField(nn.Module):
    """Per-sample CLIP features (not normalised; rendering and cosine losses take care of scale).

    The MLP's last layer is kept apart as ``head`` (a plain linear map): volume rendering and the transient
    attention's projections are linear too, so the model can carry the small hidden vectors through them and apply
    the 512-channel head once per ray instead of once per sample
    (see :func:`laser_ns.fields.language_rendering.render_language`).
    """

    def __init__(
        self,
        config: LanguageFieldConfig,
        aabb: Float[Tensor, "2 3"],
        spatial_distortion: SpatialDistortion | None,
        implementation: Literal["tcnn", "torch"],
        out_dim: int = 512,
    ) -> None:
        super().__init__()
        self.grid: HashGrid = config.grid.setup(
            aabb=aabb, spatial_distortion=spatial_distortion, implementation=implementation
        )
        self.hidden = MLP(
            in_dim=self.grid.out_dim,
            num_layers=config.num_hidden_layers,
            layer_width=config.hidden_dim,
            out_dim=config.hidden_dim,
            activation=nn.SiLU(),
            out_activation=nn.SiLU(),
            implementation="torch",
        )
        self.head = nn.Linear(config.hidden_dim, out_dim)

    def hidden_features(self, positions: Float[Tensor, "N 3"]) -> Float[Tensor, "N H"]:
        """The last hidden layer's activations; ``head`` maps them to CLIP features."""
        return self.hidden(self.grid(positions))

    def forward(self, positions: Float[Tensor, "N 3"]) -> Float[Tensor, "N D"]:
        return self.head(self.hidden_features(positions))


LabelVolumeRender = Literal["per_ray", "per_sample"]
"""Where the label volume applies its sigmoid layer: per rendered ray or per sample (see LabelVolumeConfig.render)."""


@dataclass
class LabelVolumeConfig(InstantiateConfig):
    """The label volume: its own hash grid and one linear layer to the CLIP channels, with a sigmoid."""

    _target: type = field(default_factory=lambda: LabelVolume)
    grid: HashGridConfig = field(default_factory=HashGridConfig)
    """Spatial encoding of the label volume."""
    render: LabelVolumeRender = "per_sample"
    """Where the sigmoid layer runs. 'per_sample' (the paper's): sum_s w_s sigmoid(W g_s + b), D channels per
    sample. 'per_ray': A sigmoid(W g_bar + b) with A = sum_s w_s and g_bar = sum_s w_s g_s / A, the grid encoding
    rendered first (D channels once per ray; equal for rays with one visible sample, same [0, A] range). See
    :meth:`LabelVolume.render`. 'per_ray' saved about 8 ms of a 135-140 ms CPU step in isolation but no measurable
    ratio to nerfacto on a loaded machine (benchmarks/cost_i11*.json), so the paper's form stays the default."""
    max_scale: float = 1e4
    """Cap of the learned factor ``exp(log_scale)`` on the class scores (:meth:`LabelVolume.logit_scale`). At 1e4 a
    class margin of 0.01 in ``s @ T^T`` is 500 logits, so the capped label volume's distributions are one-hot; a
    lower cap keeps them soft (100: at most about 5 logits); the default is far below float32 overflow. Must be at
    least 1 (the scale it starts from)."""


class LabelVolume(nn.Module):
    """Channel activations in [0, 1] (``sigmoid(W g(x) + b)``); rendered and softmaxed into a distribution over CLIP
    channels. :meth:`render` applies the sigmoid layer per sample (the paper's) or once per ray (the default: the
    D-channel work per sample dominated a CPU language step, benchmarks/RESULTS.md).

    Its class logits are ``exp(log_scale) * (s @ T^T) / tau`` (:meth:`class_logits`). The scale exists because
    ``s @ T^T`` is nearly flat: s is a softmax over D channels of rendered values in [0, 1], so one class's score
    can beat another's by at most ~0.01 (:func:`laser_ns.components.losses.max_score_margin`, D = 512: 0.008 for
    text at pairwise cosine 0.8 as CLIP's, 0.019 for near-orthogonal text), under 0.1 logit after the temperature.

    Learned, not calibrated from T, by a synthetic measurement (4 classes, D = 512, 128 rays with free per-ray
    channel values and features at their class's text plus noise, held there by a distillation term; Adam, 1500
    steps, lr decaying to 0.1x): a scale calibrated to T from the start (so that the hardest class pair's largest
    reachable margin is 5 logits) made the mutual loss lock onto the label volume's initial, arbitrary but now
    confident classes and drag the features along (argmax accuracy of the features 0.97 -> 0.31 at cosine 0.8,
    0.99 -> 0.39 near-orthogonal). A log-scale learned from 0 (scale ``1/tau``) grows only as the label volume
    comes to agree with the features: mutual, true-class label probability 0.91 to 0.98 at accuracy 0.91 to 0.98
    for step sizes 0.01 to 0.1; detached, it settles where the label distributions equal their targets. It needs
    that step size: at 1e-4 (the language networks' lr in ``laser``) the scale moved from 5 to 5.3, at 1e-3
    (``laser-lite``) to 9.6. So the model trains it with the language grids (lr 0.02, see
    :meth:`laser_ns.model.LaserModel.language_grid_parameters`). ``log_scale`` starts at 0, the scale before it
    existed, which is also what checkpoints saved without it load with. ("Mutual" above is the 'balanced' loss at
    strength 1; the default strength, 0.007, bounds how hard the label volume can pull the features, whatever its
    scale: :func:`laser_ns.components.losses.label_volume_classification_loss`.)
    """

    def __init__(
        self,
        config: LabelVolumeConfig,
        aabb: Float[Tensor, "2 3"],
        spatial_distortion: SpatialDistortion | None,
        implementation: Literal["tcnn", "torch"],
        out_dim: int = 512,
    ) -> None:
        super().__init__()
        self.grid: HashGrid = config.grid.setup(
            aabb=aabb, spatial_distortion=spatial_distortion, implementation=implementation
        )
        self.linear = nn.Linear(self.grid.out_dim, out_dim)
        if config.render not in ("per_ray", "per_sample"):
            raise ValueError(f"Unknown label volume render {config.render!r}; choose 'per_ray' or 'per_sample'.")
        self.render_mode: LabelVolumeRender = config.render
        if not (math.isfinite(config.max_scale) and config.max_scale >= 1.0):
            raise ValueError(
                f"label_volume.max_scale must be a finite number >= 1 (the scale starts at 1), got "
                f"{config.max_scale!r}; set it with --pipeline.model.label-volume.max-scale."
            )
        self.max_log_scale = math.log(config.max_scale)
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.register_load_state_dict_pre_hook(_default_log_scale)

    def forward(self, positions: Float[Tensor, "N 3"]) -> Float[Tensor, "N D"]:
        """Per-sample channel activations ``sigmoid(W g(x) + b)``."""
        return torch.sigmoid(self.linear(self.grid(positions)))

    def render(
        self,
        positions: Float[Tensor, "K 3"],
        weights: Float[Tensor, "K 1"],
        ray_index: Int[Tensor, " K"],
        num_rays: int,
    ) -> Float[Tensor, "R D"]:
        """Rendered channel values of R rays from their K samples (each row of ``ray_index`` names its ray).

        'per_sample' (the paper's): ``sum_s w_s sigmoid(W g_s + b)``; D channels per sample, forward and backward.
        'per_ray': ``A sigmoid(W g_bar + b)`` with ``A = sum_s w_s`` and ``g_bar = sum_s w_s g_s / A`` (the ray's
        weighted mean grid encoding): the grid's few channels are rendered and the D-channel layer runs once per ray.
        Both lie in ``[0, A]`` per channel and agree for a ray whose visible samples share one encoding (one surface
        sample); in general the sigmoid of the mean is not the mean of the sigmoids. A ray without samples gets 0.
        """
        if self.render_mode == "per_sample":
            return accumulate(weights * self(positions), ray_index, num_rays)
        rendered = accumulate(torch.cat([weights * self.grid(positions), weights], dim=-1), ray_index, num_rays)
        encoding, accumulation = rendered[:, :-1], rendered[:, -1:]  # [R, F], [R, 1]
        mean_encoding = encoding / accumulation.clamp_min(torch.finfo(encoding.dtype).tiny)
        return accumulation * torch.sigmoid(self.linear(mean_encoding))

    def logit_scale(self) -> Float[Tensor, ""]:
        """The learned factor on the class scores, ``exp(log_scale)``, capped at ``LabelVolumeConfig.max_scale``."""
        # minimum, not clamp: at the cap itself (where keep_scale_within_cap_ leaves it) clamp's gradient is zero
        return torch.minimum(self.log_scale, self.log_scale.new_tensor(self.max_log_scale)).exp()

    @torch.no_grad()
    def keep_scale_within_cap_(self) -> None:
        """Moves ``log_scale`` back to the cap after an optimizer step took it past. Past the cap its gradient is
        zero, so it would stay there even once the loss asks for a smaller scale (6000-step runs ended at up to
        1.05 times the cap); at the cap :meth:`logit_scale` still passes the gradient."""
        self.log_scale.clamp_(max=self.max_log_scale)

    def class_logits(
        self, distribution: Float[Tensor, "*batch D"], text: Float[Tensor, "C D"], tau: float
    ) -> Float[Tensor, "*batch C"]:
        """Class logits of rendered channel distributions: ``exp(log_scale) * (s @ T^T) / tau``.

        A positive factor, so the argmax over classes (label-volume segmentation) does not depend on it.
        """
        return self.logit_scale() * (distribution @ text.T) / tau


def accumulate(values: Float[Tensor, "K C"], ray_index: Int[Tensor, " K"], num_rays: int) -> Float[Tensor, "R C"]:
    """Sums per-sample values into their rays (differentiable; no dense [R, S, C] tensor)."""
    return values.new_zeros(num_rays, values.shape[-1]).index_add(0, ray_index, values)


def _default_log_scale(module, state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints saved before the label volume had a learned scale load with ``log_scale = 0`` (scale 1/tau)."""
    key = prefix + "log_scale"
    if key not in state_dict and any(k.startswith(prefix) for k in state_dict):
        state_dict[key] = torch.zeros_like(module.log_scale)

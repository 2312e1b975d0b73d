"""Volume rendering of the language fields with detached geometry
(docs/method.md#distilling-dense-features-into-the-field, docs/method.md#transient-query-attention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.rays import RaySamples
from torch import Tensor

from laser_ns.components.transient_attention import TransientQueryAttention
from laser_ns.fields.language_field import LabelVolume, LanguageField, accumulate


def render_language(
    ray_samples: RaySamples,
    weights: Float[Tensor, "R S 1"],
    language_field: LanguageField,
    transient_attention: TransientQueryAttention | None,
    label_volume: LabelVolume | None,
    weight_threshold: float,
) -> tuple[Float[Tensor, "R D"], Float[Tensor, "R D"] | None]:
    """Renders the feature field F (and the label volume's channel distribution) of R rays.

    Positions and weights are detached: language losses never reach density. Samples with a weight at or below
    ``weight_threshold`` are skipped.
    """
    weights = weights.detach()
    positions = ray_samples.frustums.get_positions().detach()  # [R, S, 3]
    keep = weights[..., 0] > weight_threshold  # [R, S]
    num_rays = keep.shape[0]

    # Per-sample features, only where the sample is visible; the attention mixes all kept samples. The field's
    # 512-channel head, the attention's projections and its out_proj are linear, and so is volume rendering:
    # so the per-sample work stays in the field's hidden width (or the attention's E) and the 512-channel map
    # is applied once per ray. Exactly the method's Σ_s w_s attention(head(h_s)), reassociated.
    ray_index = keep.nonzero()[:, 0]  # [K] ray of each kept sample, in row-major order
    kept_weights = weights[keep]  # [K, 1]
    hidden = language_field.hidden_features(positions[keep])  # [K, H]
    head = language_field.head
    rendered_hidden = accumulate(kept_weights * hidden, ray_index, num_rays)  # [R, H]
    accumulation = accumulate(kept_weights, ray_index, num_rays)  # [R, 1]
    plain = F.linear(rendered_hidden, head.weight) + accumulation * head.bias  # [R, D]
    if transient_attention is None:
        features = plain
    else:
        mixed = transient_attention.mix(*transient_attention.project_through(hidden, head))  # [K, E]
        attended = transient_attention.out_proj(accumulate(kept_weights * mixed, ray_index, num_rays))  # [R, D]
        features = plain + attended if transient_attention.residual else attended

    # Label volume: rendered channel values (per sample or per ray, its config says), then a softmax over the
    # channels per ray.
    label_dist = None
    if label_volume is not None:
        labels = label_volume.render(positions[keep], kept_weights, ray_index, num_rays)  # [R, D]
        label_dist = torch.softmax(labels, dim=-1)  # [R, D]
    return features, label_dist

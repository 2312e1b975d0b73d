"""Low-rank transient query attention (docs/method.md#transient-query-attention): sharpens per-sample features at
object edges.

A small set of 3E learned "transient" queries summarises the whole batch of samples, and every sample reads
back from that summary. Nothing of size N x N is ever formed, so the cost is O(N E^2), linear in N, which is
what lets it run on every ray sample of a training batch (often 100k+ samples).

Which samples it pools. The model calls it on the kept samples (rendering weight above ``weight_threshold``) of the
language rays only: in training, the tile rays of the step's few random square teacher patches
(``language_patches_per_step`` crops of ``language_patch_size`` pixels, from random training images), not the RGB
rays and not rays from all over the scene. That pooled summary is a statistic of the batch, like BatchNorm's mean:
an EMA of it is kept as a buffer, and in eval mode that running summary is read instead of pooling the rendered
chunk. Every sample then gets the same output whatever chunk it is rendered in, and it reads the summary it was
trained with (an average over many patches), not one of a run of neighbouring image rows.
"""

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from laser_ns.compat import LoadsOlderConfigs


@dataclass
class TransientQueryAttentionConfig(LoadsOlderConfigs, InstantiateConfig):
    """Configuration for the low-rank transient query attention."""

    LEGACY: ClassVar[dict[str, object]] = {"residual": False}
    """Runs saved before ``residual`` existed: the attention's output replaced the features."""

    _target: type = field(default_factory=lambda: TransientQueryAttention)
    embed_dim: int = 48
    """Low-rank embedding size E; 3E transient queries are learned (reference: 48, 64 for bench and sofa)."""
    momentum: float = 0.9
    """EMA momentum of the running summary used at inference: s <- momentum * s + (1 - momentum) * batch summary."""
    residual: bool = True
    """Add the attention's output to the features (out_proj starts at zero, so training starts as plain
    distillation and the attention learns a correction). False: the paper's form, where the rank-E output replaces
    the features."""


class TransientQueryAttention(nn.Module):
    """`out = A1 (A2 v) + q`, projected back to `in_dim`, with A1/A2 the sample<->transient-query attentions.

    Built by ``TransientQueryAttentionConfig.setup(in_dim=...)``: ``in_dim``, the channels of the features it reads
    and writes, is the teacher's feature size, never a config field.
    """

    def __init__(self, config: TransientQueryAttentionConfig, in_dim: int) -> None:
        super().__init__()
        self.config = config
        embed_dim, momentum = config.embed_dim, config.momentum
        self.in_dim = in_dim
        self.embed_dim = embed_dim
        self.momentum = momentum
        self.to_q = nn.Linear(in_dim, embed_dim, bias=False)
        self.to_k = nn.Linear(in_dim, embed_dim, bias=False)
        self.to_v = nn.Linear(in_dim, embed_dim, bias=False)
        self.transient_queries = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        # Cut at +-2 std; torch's default cut-off (+-2 absolute) would not truncate anything at this std.
        nn.init.trunc_normal_(self.transient_queries, std=0.02, a=-0.04, b=0.04)
        self.out_proj = nn.Linear(embed_dim, in_dim, bias=False)
        self.residual = config.residual
        if self.residual:
            nn.init.zeros_(self.out_proj.weight)  # starts as the identity map: plain distillation
        self.register_buffer("running_summary", torch.zeros(3 * embed_dim, embed_dim))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    running_buffers = ("running_summary",)
    """Running mean of the batch's summary (averaged over the ranks after each step under DDP:
    laser_ns/distributed.py)."""

    def project(self, x: Float[Tensor, "N in_dim"]) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v (each [N, E]) of the samples' features."""
        return self.to_q(x), self.to_k(x), self.to_v(x)

    def project_through(self, hidden: Float[Tensor, "N H"], head: nn.Linear) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v of the features ``head(hidden)`` without forming them: the two linear maps are fused first.

        With H (a field's hidden width) far below ``in_dim``, this skips every per-sample in_dim-wide product.
        """
        qkv_weight = torch.cat([self.to_q.weight, self.to_k.weight, self.to_v.weight])  # [3E, in_dim]
        fused = qkv_weight @ head.weight  # [3E, H]
        bias = qkv_weight @ head.bias if head.bias is not None else None  # [3E]
        return torch.nn.functional.linear(hidden, fused, bias).split(self.embed_dim, dim=-1)

    def summary(self, k: Float[Tensor, "N E"], v: Float[Tensor, "N E"]) -> Float[Tensor, "3E E"]:
        """The transient queries' pooled summary of the samples' keys and values (a softmax over the N samples)."""
        return torch.softmax(self.transient_queries @ k.T, dim=-1) @ v  # [3E, N] @ [N, E] -> [3E, E]

    def mix(self, q: Float[Tensor, "N E"], k: Float[Tensor, "N E"], v: Float[Tensor, "N E"]) -> Float[Tensor, "N E"]:
        """``A1 (A2 v) + q``: the attention's output before ``out_proj`` (linear, so it can follow volume rendering).

        Training: the summary pools the N samples of the batch and updates the running summary. Eval: the running
        summary is read (before any training step has set it, the samples' own summary is used).
        """
        if self.training and q.shape[0] > 0:
            # Each transient query pools the batch: a softmax over the N samples (no N x N matrix).
            pooled = self.summary(k, v)
            with torch.no_grad():
                blended = self.momentum * self.running_summary + (1.0 - self.momentum) * pooled.detach()
                # the first batch initialises the EMA (no blend with zeros); torch.where avoids a device sync
                self.running_summary.copy_(torch.where(self.num_updates == 0, pooled.detach(), blended))
                self.num_updates += 1
        elif self.training or int(self.num_updates) == 0:
            pooled = self.summary(k, v)
        else:
            pooled = self.running_summary.to(q.dtype)
        # Each sample reads the pooled summary back through its own softmax over the 3E queries.
        read = torch.softmax(q @ self.transient_queries.T, dim=-1) @ pooled  # [N, 3E] @ [3E, E] -> [N, E]
        return read + q

    def forward(self, x: Float[Tensor, "N in_dim"]) -> Float[Tensor, "N in_dim"]:
        """The attention across the N samples of ``x`` (see ``mix`` for training and eval), back to ``in_dim``, added
        to ``x`` when ``residual``."""
        out = self.out_proj(self.mix(*self.project(x)))
        return x + out if self.residual else out

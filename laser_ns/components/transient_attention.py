"""Low-rank transient query attention (METHOD.md section 5): sharpens per-sample features at object edges.

A small set of 3E learned "transient" queries summarises the whole batch of samples, and every sample reads
back from that summary. Nothing of size N x N is ever formed, so the cost is O(N E^2), linear in N, which is
what lets it run on every ray sample of a training batch (often 100k+ samples).
"""

from dataclasses import dataclass, field, fields

import torch
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn


@dataclass
class TransientQueryAttentionConfig(InstantiateConfig):
    """Configuration for the low-rank transient query attention."""

    _target: type = field(default_factory=lambda: TransientQueryAttention)
    in_dim: int = 512
    """Channels of the per-sample features it reads and writes (the CLIP feature size)."""
    embed_dim: int = 48
    """Low-rank embedding size E; 3E transient queries are learned (reference: 48, 64 for bench and sofa)."""

    def setup(self, **kwargs) -> "TransientQueryAttention":
        """Builds the module from this config; keyword arguments override config fields."""
        params = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_target"}
        params.update(kwargs)
        return self._target(**params)


class TransientQueryAttention(nn.Module):
    """`out = A1 (A2 v) + q`, projected back to `in_dim`, with A1/A2 the sample<->transient-query attentions.

    Args:
        in_dim: channels of the input and output features.
        embed_dim: low-rank size E; the learned transient queries have shape [3E, E].
    """

    def __init__(self, in_dim: int = 512, embed_dim: int = 48) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.embed_dim = embed_dim
        self.to_q = nn.Linear(in_dim, embed_dim, bias=False)
        self.to_k = nn.Linear(in_dim, embed_dim, bias=False)
        self.to_v = nn.Linear(in_dim, embed_dim, bias=False)
        self.transient_queries = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        # Cut at +-2 std; torch's default cut-off (+-2 absolute) would not truncate anything at this std.
        nn.init.trunc_normal_(self.transient_queries, std=0.02, a=-0.04, b=0.04)
        self.out_proj = nn.Linear(embed_dim, in_dim, bias=False)

    def forward(self, x: Float[Tensor, "N in_dim"]) -> Float[Tensor, "N in_dim"]:
        """Applies the attention across all N samples of the batch (N may be 0)."""
        q = self.to_q(x)  # [N, E]
        k = self.to_k(x)  # [N, E]
        v = self.to_v(x)  # [N, E]
        queries = self.transient_queries  # [3E, E]

        # Each transient query pools the batch: a softmax over the N samples (no N x N matrix).
        pooled = torch.softmax(queries @ k.T, dim=-1) @ v  # [3E, N] @ [N, E] -> [3E, E]
        # Each sample reads the pooled summary back through its own softmax over the 3E queries.
        read = torch.softmax(q @ queries.T, dim=-1) @ pooled  # [N, 3E] @ [3E, E] -> [N, E]
        return self.out_proj(read + q)

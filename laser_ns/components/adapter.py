"""Feature adapter (docs/method.md#adapter-and-self-cross-training): denoises a set of 512-d CLIP features by attending
across the set.

The same adapter is applied to the teacher features G and to the rendered features F; self-cross training
(see `losses.py`) makes the two denoise each other.

Centring. Both centres are EMAs of the scalar mean of a batch, with `c <- momentum * c + (1 - momentum) * mean`
(momentum 0.9 keeps 90% of the old value; note this is the opposite of BatchNorm's convention). They are
buffers, so checkpoints carry them and no optimiser touches them. Choice made here, as the spec leaves it open:
in training mode the EMA is first updated with the *detached* batch mean and the updated value is subtracted
(so what a training step subtracts is exactly what gets saved); in eval mode the stored value is used and
never changed. The very first training batch initialises each EMA to its own mean instead of blending with
zero, which removes the ~20-step warm-up bias of a zero-initialised EMA and is otherwise identical.
Note: every training-mode call updates the EMAs, so calling the adapter on G and then on F mixes both
streams into the one pair of centres, as one shared adapter does.

Size. The attention is N x N over the rows, so memory and time grow as N^2 (scaled-dot-product kernels avoid
storing the matrix where they can, but the compute remains quadratic). Callers must keep N moderate: a
training batch of rays (a few thousand) or an inference chunk (<= `max_tokens`). The output for a row depends
on the other rows of the same call and on its position in the call (positional embedding), so split rays
into chunks the same way every time you want reproducible results.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn


def sinusoidal_position_embedding(
    n: int, dim: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> Float[Tensor, "n dim"]:
    """Transformer sin/cos table: row p, column 2i = sin(p w_i), column 2i+1 = cos(p w_i), w_i = 10000^(-2i/dim).

    Computed on the fly for any n, so no batch size is ever capped by a pre-built table.
    """
    if dim % 2 != 0:
        raise ValueError(f"sinusoidal_position_embedding needs an even dim, got dim={dim}; use an even feature size.")
    # Angles in float32 whatever the output dtype: half precision loses the phase of large positions.
    positions = torch.arange(n, device=device, dtype=torch.float32)[:, None]  # [n, 1]
    freqs = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = positions * freqs  # [n, dim/2]
    table = torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(n, dim)  # interleaved sin, cos
    return table.to(dtype)


@dataclass
class AdapterConfig(InstantiateConfig):
    """Configuration for the feature adapter."""

    _target: type = field(default_factory=lambda: Adapter)
    attn_dim: int = 32
    """Size of the single-head attention's q/k/v."""
    hidden_dim: int = 256
    """Hidden width of the residual MLP after the attention."""
    momentum: float = 0.9
    """EMA momentum of the two scalar centres: c <- momentum * c + (1 - momentum) * batch mean."""
    mix: float = 0.2
    """Weight of the attention branch in x_adapted = mix * u2 + (1 - mix) * x_orig (before the final centring)."""
    max_tokens: int = 16384
    """Most rows accepted in one call; the attention is N x N, so larger inputs must be split into chunks."""
    position_scale: float = 1.0
    """Multiplier of the sinusoidal table (rows have norm sqrt(dim/2), 16 at 512). 1.0 is the method as published;
    an option because our teachers give unit-norm features (one run at 1/16, with unit-norm rendered features,
    measured worse on a generated scene)."""
    input_norm: float | None = None
    """Rescale every row to this norm before adapting. The reference feeds raw CLIP tokens (norm about 10) against
    the positional table's 16; our features are unit (teacher) or unnormalised (rendered). None: rows as given."""
    scaled_attention: bool = True
    """Divide the attention logits by sqrt(attn_dim), as standard attention does. False: the reference's plain
    q k^T (no scale)."""


class Adapter(nn.Module):
    """Returns `(x_orig, x_adapted)` for a set of features, exactly as docs/method.md#adapter-and-self-cross-training
    states it.

    Built by ``AdapterConfig.setup(dim=...)``: the feature size ``dim`` is the teacher's, never a config field. A call
    with more than ``config.max_tokens`` rows raises an error instead of silently allocating N^2 memory.
    """

    def __init__(self, config: AdapterConfig, dim: int) -> None:
        super().__init__()
        self.config = config
        attn_dim, hidden_dim, position_scale = config.attn_dim, config.hidden_dim, config.position_scale
        momentum, mix, max_tokens = config.momentum, config.mix, config.max_tokens
        self.dim = dim
        self.momentum = momentum
        self.mix = mix
        self.max_tokens = max_tokens
        self.position_scale = position_scale
        self.to_q = nn.Linear(dim, attn_dim, bias=False)
        self.to_k = nn.Linear(dim, attn_dim, bias=False)
        self.to_v = nn.Linear(dim, attn_dim, bias=False)
        self.out_proj = nn.Linear(attn_dim, dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, dim), nn.ReLU())
        self.register_buffer("orig_centre", torch.zeros(()))
        self.register_buffer("adapted_centre", torch.zeros(()))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    running_buffers = ("orig_centre", "adapted_centre")
    """Running means of the batch (averaged over the ranks after each step under DDP: laser_ns/distributed.py)."""

    def _centre(self, ema: Tensor, values: Tensor) -> Tensor:
        """Updates `ema` in place with the detached mean of `values` (training only) and returns it."""
        if self.training:
            batch_mean = values.detach().mean(dtype=ema.dtype)
            blended = self.momentum * ema + (1.0 - self.momentum) * batch_mean
            # torch.where instead of a Python `if` keeps this free of a device sync.
            ema.copy_(torch.where(self.num_updates == 0, batch_mean, blended))
        return ema.to(values.dtype)

    @property
    def attention_scale(self) -> float:
        """Multiplier of the attention logits: 1/sqrt(attn_dim), or 1 without ``scaled_attention`` (the reference's
        plain q k^T)."""
        return self.to_q.out_features**-0.5 if self.config.scaled_attention else 1.0

    def tokens(self, x: Float[Tensor, "N dim"]) -> tuple[Float[Tensor, "N dim"], Float[Tensor, "N dim"]]:
        """The rows as the adapter reads them (rescaled to ``input_norm`` when it is set), and the attention's input:
        those rows with the positional table added."""
        if self.config.input_norm is not None:
            x = self.config.input_norm * F.normalize(x, dim=-1)
        table = sinusoidal_position_embedding(x.shape[0], self.dim, device=x.device, dtype=x.dtype)
        return x, x + self.position_scale * table

    @torch.no_grad()
    def attention_weights(self, x: Float[Tensor, "N dim"]) -> Float[Tensor, "N N"]:
        """The attention's N x N weights over the rows of ``x``, which :meth:`forward` never stores (diagnostics)."""
        _, z = self.tokens(x)
        return torch.softmax(self.to_q(z) @ self.to_k(z).T * self.attention_scale, dim=-1)

    def forward(self, x: Float[Tensor, "N dim"]) -> tuple[Float[Tensor, "N dim"], Float[Tensor, "N dim"]]:
        """Adapts the N rows of `x` jointly; returns the centred input and the adapted features."""
        n = x.shape[0]
        if n > self.max_tokens:
            raise ValueError(
                f"Adapter got {n} feature rows but max_tokens={self.max_tokens}: its attention is N x N. "
                "Split the rays into smaller chunks (e.g. lower eval_num_rays_per_chunk) or raise "
                "AdapterConfig.max_tokens if the memory allows."
            )
        if n == 0:
            # An empty set has no mean; leave the EMAs untouched.
            return x - self.orig_centre.to(x.dtype), x - self.adapted_centre.to(x.dtype)

        x, z = self.tokens(x)

        # Centred input.
        x_orig = x - self._centre(self.orig_centre, x)

        # Single-head attention across the rows, on positionally tagged raw features; the fused kernel avoids
        # storing the N x N weights where the backend allows.
        q, k, v = self.to_q(z), self.to_k(z), self.to_v(z)  # [N, attn_dim] each
        attended = F.scaled_dot_product_attention(q[None], k[None], v[None], scale=self.attention_scale)[0]
        u = self.out_proj(attended)  # [N, dim]

        # Residual MLP, blend with the centred input, centre again.
        u2 = self.mlp(u) + u
        mixed = self.mix * u2 + (1.0 - self.mix) * x_orig
        x_adapted = mixed - self._centre(self.adapted_centre, mixed)

        if self.training:
            self.num_updates += 1
        return x_orig, x_adapted

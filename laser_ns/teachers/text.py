"""Text embeddings that need no model: a fixed pseudo-random unit vector per prompt string.

These vectors carry NO meaning. Two prompts get unrelated vectors however close their words are ("chair" and
"chairs" are as far apart as "chair" and "sky"), so they only make sense when the queries are exactly the class
names of a label map (offline demos and tests). They are stable across runs, machines and processes because the
values come from sha256 of the prompt alone (not Python's salted ``hash``, not a torch RNG).
"""

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor


def hashed_text_embedding(prompt: str, dim: int) -> Float[Tensor, " D"]:
    """Unit vector in ``dim`` dimensions: normal samples derived from sha256 of ``prompt``, then normalised.

    The randomness is sha256 in counter mode turned into normals by Box-Muller, not a framework RNG, so the vectors
    do not change with the torch version or platform (feature caches and trained label volumes depend on them).
    """
    if dim <= 0:
        raise ValueError(f"Embedding dimension must be positive, got {dim}.")
    prefix = b"laser_ns/hashed-text/" + prompt.encode("utf-8") + b"\0"
    needed = 2 * dim * 8  # two 64-bit uniforms per normal sample
    stream = b"".join(
        hashlib.sha256(prefix + counter.to_bytes(8, "little")).digest() for counter in range(-(-needed // 32))
    )
    words = np.frombuffer(stream[:needed], dtype="<u8")
    # Top 53 bits -> uniforms strictly inside (0, 1), so the log below is finite.
    uniforms = ((words >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    radius = np.sqrt(-2.0 * np.log(uniforms[:dim]))
    vector = torch.from_numpy(radius * np.cos(2.0 * np.pi * uniforms[dim:]))
    return (vector / vector.norm()).float()


def hashed_text_embeddings(prompts: Sequence[str], dim: int) -> Float[Tensor, "C D"]:
    """:func:`hashed_text_embedding` of each prompt, stacked (on the CPU)."""
    if isinstance(prompts, str):
        raise TypeError(f"Expected a sequence of prompts, got the single string {prompts!r}; wrap it in a list.")
    if len(prompts) == 0:
        return torch.zeros(0, dim)
    return torch.stack([hashed_text_embedding(prompt, dim) for prompt in prompts])

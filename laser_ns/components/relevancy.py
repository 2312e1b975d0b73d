"""Scoring rendered CLIP features against text (docs/method.md#query-time-segmentation-and-relevancy), as small pure
functions."""

import colorsys
import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from laser_ns.conventions import COLOUR_WORDS

# Hand-picked, well-separated colours for the first classes; more classes continue on a golden-angle hue walk.
_PALETTE = (
    (0.90, 0.10, 0.10),
    (0.10, 0.45, 0.90),
    (0.15, 0.75, 0.20),
    (1.00, 0.60, 0.00),
    (0.60, 0.20, 0.80),
    (0.00, 0.80, 0.80),
    (0.95, 0.85, 0.10),
    (0.90, 0.30, 0.65),
    (0.55, 0.35, 0.15),
    (0.50, 0.50, 0.50),
    (0.60, 0.85, 0.35),
    (0.05, 0.20, 0.45),
)


def cosine_scores(features: Float[Tensor, "*batch D"], text: Float[Tensor, "C D"]) -> Float[Tensor, "*batch C"]:
    """Cosine similarity of every feature with every text embedding (both are L2-normalised here)."""
    return F.normalize(features, dim=-1) @ F.normalize(text, dim=-1).T


def lerf_relevancy(
    features: Float[Tensor, "*batch D"],
    positives: Float[Tensor, "P D"],
    negatives: Float[Tensor, "M D"],
    temperature: float = 10.0,
) -> Float[Tensor, "*batch P"]:
    """LERF's relevancy: `min_j softmax(temperature * [cos(f, t), cos(f, n_j)])[0]` for each positive t.

    A two-way softmax's first entry is `sigmoid(temperature * (cos(f, t) - cos(f, n_j)))`; 0.5 means the
    feature prefers neither the query nor the most competitive negative.
    """
    if negatives.shape[0] == 0:
        raise ValueError("lerf_relevancy needs at least one negative prompt (e.g. 'object', 'things', 'stuff').")
    pos = cosine_scores(features, positives)  # [..., P]
    neg = cosine_scores(features, negatives)  # [..., M]
    pairwise = torch.sigmoid(temperature * (pos[..., :, None] - neg[..., None, :]))  # [..., P, M]
    return pairwise.amin(dim=-1)


def closed_set_segmentation(features: Float[Tensor, "*batch D"], text: Float[Tensor, "C D"]) -> Int[Tensor, "*batch"]:
    """Index of the most similar class for every feature (int64)."""
    return cosine_scores(features, text).argmax(dim=-1)


def label_volume_scores(s: Float[Tensor, "*batch D"], text: Float[Tensor, "C D"]) -> Float[Tensor, "*batch C"]:
    """Class scores of the label volume, `s @ T^T`, with s a distribution over the D CLIP channels."""
    return s @ text.T


def class_colormap(num_classes: int) -> Float[Tensor, "C 3"]:
    """Deterministic, distinct RGB colours in [0, 1] for class indices 0..num_classes-1."""
    colours = list(_PALETTE[:num_classes])
    golden = 0.6180339887498949
    for i in range(num_classes - len(colours)):
        # Golden-ratio hue steps never repeat; cycling value/saturation separates hues that land close.
        hue = (0.05 + i * golden) % 1.0
        saturation = (0.55, 0.85, 1.0)[i % 3]
        value = (0.95, 0.7, 0.5)[(i // 3) % 3]
        colours.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return torch.tensor(colours, dtype=torch.float32).reshape(num_classes, 3)


_SHADES = (1.0, 0.6, 1.35, 0.4, 1.7)
"""Brightness factors for the second, third... class naming the same colour."""


def _colour_word(name: str) -> str | None:
    for word in re.findall(r"[a-z]+", name.lower()):
        if word in COLOUR_WORDS:
            return word
    return None


def _shade(base: tuple[float, float, float], k: int) -> tuple[float, float, float]:
    factor = _SHADES[k % len(_SHADES)]
    if factor <= 1.0:
        return tuple(c * factor for c in base)
    return tuple(min(1.0, c + (1.0 - c) * (factor - 1.0)) for c in base)  # towards white


def class_colours(names: Sequence[str], taken: Sequence[Sequence[float]] = ()) -> Float[Tensor, "C 3"]:
    """RGB colours in [0, 1] for classes named ``names`` that do not contradict the names: a class whose name holds a
    colour word ("red apple", "green ball") is drawn in that colour (a darker or lighter shade for the second one of
    the same word); every other class takes the next colour of :func:`class_colormap` that is not close to a named
    colour of the list, nor to a colour already given (``taken``: colours already on screen). Deterministic."""
    words = [_colour_word(name) for name in names]
    reserved = [COLOUR_WORDS[w] for w in words if w is not None]
    given: list[tuple[float, float, float]] = [tuple(float(c) for c in colour) for colour in taken]
    counts: dict[str, int] = {}
    candidates = iter(class_colormap(len(names) + len(_PALETTE) + 64).tolist())
    result = []
    for word in words:
        if word is not None:
            colour = _shade(COLOUR_WORDS[word], counts.get(word, 0))
            counts[word] = counts.get(word, 0) + 1
        else:
            colour = None
            for candidate in candidates:
                if all(math.dist(candidate, other) > 0.35 for other in reserved + given):
                    colour = tuple(candidate)
                    break
            if colour is None:  # more classes than distinct colours: reuse the map's own order
                colour = tuple(class_colormap(len(result) + 1)[-1].tolist())
        given.append(colour)
        result.append(colour)
    return torch.tensor(result, dtype=torch.float32).reshape(len(names), 3)

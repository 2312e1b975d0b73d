"""The interface every dense teacher implements, and the tile-grid rule they share.

A teacher turns one image into one feature per 16x16 pixel tile (docs/method.md#dense-clip-teacher) and encodes text
prompts into
the same space. The image is first resized to the nearest multiple of 16 in each dimension (at least 16), so an
``H x W`` image gives ``round(H / 16) x round(W / 16)`` tiles (halves round up, minimum 1). Use
:func:`tile_grid_size` rather than re-deriving this.
"""

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

TILE_SIZE = 16
"""Pixels per tile side: ViT-B/16's patch size."""


def valid_tiles(features: Float[Tensor, "... D"]) -> Bool[Tensor, "..."]:
    """Tiles that carry teacher signal. Teacher features are unit vectors; a tile without signal (e.g. unlabelled for
    the label-map teachers) is a zero vector. The one rule for the patch sampler, the clusters and the centring."""
    return features.float().norm(dim=-1) > 0.5


def tile_grid_size(height: int, width: int, tile_size: int = TILE_SIZE) -> tuple[int, int]:
    """Number of tiles ``(h, w)`` for an image of ``height x width`` pixels.

    Each side is resized to the nearest multiple of ``tile_size`` (halves round up), never below one tile.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"Image size must be positive, got {height}x{width}.")
    # floor(x + 0.5) instead of round(): Python's round() goes to even on halves, which would make 24 px -> 1 tile.
    return max(1, math.floor(height / tile_size + 0.5)), max(1, math.floor(width / tile_size + 0.5))


def resize_image_to_tiles(image: Float[Tensor, "H W 3"], tile_size: int = TILE_SIZE) -> Float[Tensor, "3 h*t w*t"]:
    """Channels-first copy of ``image`` resized (bilinear, antialiased) to a whole number of tiles."""
    h, w = tile_grid_size(image.shape[0], image.shape[1], tile_size)
    chw = image.permute(2, 0, 1)  # [3, H, W]
    if chw.shape[1:] == (h * tile_size, w * tile_size):
        return chw
    return F.interpolate(
        chw[None], size=(h * tile_size, w * tile_size), mode="bilinear", align_corners=False, antialias=True
    )[0]


def resize_labels_to_tiles(labels: Int[Tensor, "H W"], tile_size: int = TILE_SIZE) -> Int[Tensor, "h*t w*t"]:
    """``labels`` resized with nearest-neighbour sampling (labels must not be blended) to a whole number of tiles."""
    h, w = tile_grid_size(labels.shape[0], labels.shape[1], tile_size)
    if labels.shape == (h * tile_size, w * tile_size):
        return labels
    # "nearest-exact" samples pixel centres; plain "nearest" is biased towards the top-left.
    resized = F.interpolate(labels[None, None].float(), size=(h * tile_size, w * tile_size), mode="nearest-exact")
    return resized[0, 0].round().to(labels.dtype)


def as_float_image(image: Tensor) -> Float[Tensor, "H W 3"]:
    """Validate an ``[H, W, 3]`` image and return it as floats in [0, 1] (uint8 images are divided by 255)."""
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"Teachers take one RGB image shaped [H, W, 3], got shape {tuple(image.shape)}; "
            "drop any alpha channel and the batch dimension first."
        )
    if image.dtype == torch.uint8:
        return image.float() / 255.0
    if not image.is_floating_point():
        raise ValueError(f"Image dtype {image.dtype} is not supported; pass floats in [0, 1] or uint8.")
    return image.float()


def tile_validity(features: Float[Tensor, "h w D"]) -> Bool[Tensor, "h w"]:
    """Tiles that carry a feature. Teachers return an all-zero vector for a tile they know nothing about
    (e.g. an all-unlabelled tile of the label-map teacher); such tiles should be left out of the losses."""
    return features.abs().amax(dim=-1) > 0


@dataclass
class DenseTeacherConfig(InstantiateConfig):
    """Base config of a dense teacher; concrete teachers subclass it."""

    _target: type = field(default_factory=lambda: DenseTeacher)


class DenseTeacher(nn.Module, ABC):
    """A frozen model that gives one L2-normalised feature per 16x16 image tile, and text features in the same space.

    Subclasses implement :meth:`identity`, :meth:`encode_text` and :meth:`dense_features`. Teachers hold no
    trainable state and contribute nothing to the owning model's ``state_dict``.
    """

    feature_dim: int = 512
    """Channels of each tile feature and text embedding."""
    tile_size: int = TILE_SIZE
    """Pixels per tile side."""
    needs_labels: bool = False
    """Whether :meth:`dense_features` needs the image's label map."""

    def __init__(self) -> None:
        super().__init__()
        # An empty, non-persistent buffer: `.to(device)` moves it, so it tells where the teacher lives, and it never
        # reaches a checkpoint.
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)

    @property
    def device(self) -> torch.device:
        """Device the teacher computes on (moved with ``.to()``)."""
        return self._device_anchor.device

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Tiles ``(h, w)`` that :meth:`dense_features` returns for an image of ``height x width`` pixels."""
        return tile_grid_size(height, width, self.tile_size)

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """JSON-able description of everything that changes the features; the feature cache's key."""

    @abstractmethod
    def encode_text(self, prompts: Sequence[str]) -> Float[Tensor, "C D"]:
        """L2-normalised embedding of each prompt, on the teacher's device."""

    def encode_text_augmented(self, prompts: Sequence[str]) -> Float[Tensor, "C D"]:
        """Embeddings of each prompt said twice ("chair chair"): the text augmentation
        (docs/method.md#text-augmentation)."""
        return self.encode_text([f"{prompt} {prompt}" for prompt in prompts])

    @abstractmethod
    def dense_features(
        self, image: Float[Tensor, "H W 3"], labels: Int[Tensor, "H W"] | None = None
    ) -> Float[Tensor, "h w D"]:
        """One L2-normalised feature per tile of ``image`` (values in [0, 1]), on the teacher's device.

        ``h, w = self.grid_size(H, W)``. ``labels`` is the image's label map, needed only when ``needs_labels``.
        """

    def forward(
        self, image: Float[Tensor, "H W 3"], labels: Int[Tensor, "H W"] | None = None
    ) -> Float[Tensor, "h w D"]:
        """Same as :meth:`dense_features`."""
        return self.dense_features(image, labels)

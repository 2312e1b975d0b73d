"""Label-map teacher: lifts per-view 2D label maps (docs/method.md#per-view-label-maps) into tile features that look
like a teacher's.

Each 16x16 tile's feature is the normalised mean of the class embeddings of its pixels' labels, so tiles that
straddle a class boundary get a mixture, as dense CLIP's do. Optional degradations make the targets as imperfect
as real dense CLIP features (blur across tiles, wrong tiles, noise), to exercise the denoising parts of the method.

Unlabelled pixels (255) are ignored. A tile with no labelled pixel gets the all-zero feature: it carries no target,
and :func:`laser_ns.teachers.base.tile_validity` reports it as invalid so that losses can skip it.
"""

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from laser_ns.conventions import CANONICAL_NEGATIVES, UNLABELLED
from laser_ns.teachers.base import (
    DenseTeacher,
    DenseTeacherConfig,
    resize_labels_to_tiles,
    tile_grid_size,
)
from laser_ns.teachers.dense_clip import DenseClip, DenseClipConfig
from laser_ns.teachers.text import hashed_text_embeddings

_FEATURE_FORMAT = 1
"""Bumped whenever the feature computation changes (invalidates feature caches)."""

BASELINE_PROMPTS = CANONICAL_NEGATIVES
"""LERF's canonical negatives: the model's predictor encodes them on every run as relevancy baselines, so hashed
vectors for them are expected, not a user's query that cannot mean anything."""

logger = logging.getLogger(__name__)


def _is_doubled(prompt: str) -> bool:
    """Whether ``prompt`` is some text said twice ("chair chair"): the text augmentation's internal prompts."""
    half, rest = divmod(len(prompt), 2)
    return rest == 1 and prompt[half] == " " and prompt[:half] == prompt[half + 1 :]


@dataclass
class LabelMapTeacherConfig(DenseTeacherConfig):
    """Teacher that turns each view's label map into tile features (no image model)."""

    _target: type = field(default_factory=lambda: LabelMapTeacher)
    text_encoder: Literal["clip", "hashed"] = "hashed"
    """Class embeddings: CLIP text features, or 'hashed' fixed random vectors per name (no meaning; offline only)."""
    clip: DenseClipConfig = field(default_factory=DenseClipConfig)
    """CLIP whose text encoder embeds the class names when text_encoder is 'clip' (its image side is unused)."""
    hashed_dim: int = 512
    """Dimension of the hashed embeddings; 512 matches CLIP ViT-B-16."""
    boundary_mixing: float = 0.0
    """Blend of each tile's feature with its 3x3 neighbourhood mean (0: none, 1: only the mean); mimics CLIP blur."""
    label_noise: float = 0.0
    """Probability that a tile's labels are replaced by one random class (differs per view, reproducible)."""
    feature_noise: float = 0.0
    """Std of Gaussian noise added to each tile feature (unit-norm scale) before normalisation."""
    seed: int = 0
    """Seed of the label and feature noise; mixed with a hash of each label map."""
    tile_size: int = 16
    """Pixels per tile of the teacher's image (16 = ViT-B/16's patch)."""


class LabelMapTeacher(DenseTeacher):
    """Dense teacher built from label maps: needs ``labels`` and the class names (label k means ``names[k]``)."""

    config: LabelMapTeacherConfig
    needs_labels = True

    def __init__(self, config: LabelMapTeacherConfig, class_names: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__()
        self._check_config(config)
        self.config = config
        self.tile_size = config.tile_size
        # Registered so that .to() reaches it; DenseClip keeps its weights out of state_dict itself.
        self.clip_teacher: DenseClip | None = (
            config.clip.setup() if getattr(config, "text_encoder", None) == "clip" else None
        )
        self._class_names: list[str] | None = None
        self._class_embeddings: Tensor | None = None
        self._warned_prompts: set[str] = set()
        if class_names is not None:
            self.set_class_names(class_names)

    @staticmethod
    def _check_config(config: LabelMapTeacherConfig) -> None:
        """Refuse values outside their range, naming the option."""
        for name in ("boundary_mixing", "label_noise"):
            value = getattr(config, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"LabelMapTeacher {name} must be in [0, 1], got {value}.")
        if config.feature_noise < 0:
            raise ValueError(f"LabelMapTeacher feature_noise is a standard deviation, got {config.feature_noise} < 0.")
        if config.text_encoder not in ("clip", "hashed"):
            raise ValueError(f"Unknown text_encoder {config.text_encoder!r}; choose 'clip' or 'hashed'.")
        if config.tile_size < 1:
            raise ValueError(f"LabelMapTeacher tile_size is in pixels and must be >= 1, got {config.tile_size}.")

    @property
    def feature_dim(self) -> int:  # type: ignore[override]
        """Channels of the class embeddings."""
        return self.clip_teacher.feature_dim if self.clip_teacher is not None else self.config.hashed_dim

    @property
    def class_names(self) -> list[str]:
        """Prompts of the label values: label k means ``class_names[k]``."""
        if self._class_names is None:
            raise RuntimeError(
                "LabelMapTeacher has no class names yet; call set_class_names(names) with the scene's "
                "labels/names.json list before asking for features."
            )
        return list(self._class_names)

    def set_class_names(self, names: Sequence[str]) -> None:
        """Set the prompts of the label values (label k means ``names[k]``)."""
        if isinstance(names, str):
            raise TypeError(f"Expected a list of class names, got the single string {names!r}.")
        names = [str(name) for name in names]
        if not names:
            raise ValueError("LabelMapTeacher needs at least one class name.")
        if len(names) >= UNLABELLED:
            raise ValueError(f"{len(names)} classes do not fit 8-bit label maps (value {UNLABELLED} = unlabelled).")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"Class names must be unique; repeated: {duplicates}.")
        self._class_names = names
        self._class_embeddings = None

    def identity(self) -> dict[str, Any]:
        """Class names, text encoder and every degradation setting."""
        cfg = self.config
        text: dict[str, Any]
        if self.clip_teacher is not None:
            text = {"encoder": "clip", **{k: v for k, v in self.clip_teacher.identity().items() if k != "mode"}}
        else:
            text = {"encoder": "hashed", "dim": cfg.hashed_dim}
        return {
            "teacher": "label_map",
            "format": _FEATURE_FORMAT,
            "class_names": self.class_names,
            "text": text,
            "boundary_mixing": cfg.boundary_mixing,
            "label_noise": cfg.label_noise,
            "feature_noise": cfg.feature_noise,
            "seed": cfg.seed,
            "tile_size": self.tile_size,
        }

    def encode_text(self, prompts: Sequence[str]) -> Float[Tensor, "C D"]:
        """Embeddings in the class-embedding space. With 'hashed', only exact class names are meaningful."""
        if self.clip_teacher is not None:
            return self.clip_teacher.encode_text(prompts)
        self._warn_meaningless(prompts)
        return hashed_text_embeddings(prompts, self.config.hashed_dim).to(self.device)

    def _warn_meaningless(self, prompts: Sequence[str]) -> None:
        """Warn once per prompt that hashed text gives a random vector to anything but an exact class name."""
        names = self._class_names or []
        for prompt in prompts:
            if prompt in names or prompt in BASELINE_PROMPTS or _is_doubled(prompt) or prompt in self._warned_prompts:
                continue
            self._warned_prompts.add(prompt)
            logger.warning(
                "The text %r is not one of this scene's class names %s: the label-map teacher's hashed text encoder "
                "(--pipeline.label-teacher.text-encoder hashed, the default) gives it a fixed random vector that "
                "means nothing, so its relevancy and segmentation are noise. Query an exact class name, or use "
                "--pipeline.label-teacher.text-encoder clip (CLIP's text encoder; needs the CLIP weights).",
                prompt,
                names,
            )

    def class_embeddings(self) -> Float[Tensor, "C D"]:
        """Embedding of each class name, in label order, on the teacher's device."""
        if self._class_embeddings is None:
            self._class_embeddings = self.encode_text(self.class_names)
        return self._class_embeddings.to(self.device)

    def _noise_generator(self, labels: Tensor) -> torch.Generator:
        # Seeded by the label map's bytes: each view gets its own noise (view-inconsistent, like a real teacher's
        # errors), and the same view always gets the same noise.
        digest = hashlib.sha256()
        digest.update(f"{self.config.seed}:{tuple(labels.shape)}".encode())
        digest.update(labels.to(torch.int64).cpu().contiguous().numpy().tobytes())
        return torch.Generator().manual_seed(int.from_bytes(digest.digest()[:8], "little"))

    def tile_class_distribution(
        self, image: Float[Tensor, "H W 3"], labels: Int[Tensor, "H W"] | None, num_classes: int
    ) -> tuple[Float[Tensor, "h w C"], Float[Tensor, "h w 1"], torch.Generator]:
        """Each tile's class distribution (its labelled pixels' histogram; ``label_noise`` replaces a tile's with one
        random class), the valid-tile map (1 where a tile has a labelled pixel) and the view's noise generator,
        which the caller goes on drawing from."""
        if labels is None:
            raise ValueError(
                f"{type(self).__name__} needs the image's label map (labels=...); the scene must have "
                "labels/<image>.png for every training view (docs/method.md#per-view-label-maps), or use the dense "
                "CLIP teacher."
            )
        if labels.ndim != 2 or labels.is_floating_point():
            raise ValueError(f"Label map must be an integer [H, W] tensor, got {labels.dtype} {tuple(labels.shape)}.")
        if tuple(labels.shape) != tuple(image.shape[:2]):
            raise ValueError(f"Label map is {tuple(labels.shape)} but its image is {tuple(image.shape[:2])}.")
        labels = labels.to(self.device, torch.int64)
        bad = labels[(labels != UNLABELLED) & ((labels < 0) | (labels >= num_classes))]
        if bad.numel() > 0:
            raise ValueError(
                f"Label value {int(bad[0])} has no class: there are {num_classes} class names (values 0.."
                f"{num_classes - 1}, {UNLABELLED} = unlabelled). Check labels/names.json against the label maps."
            )
        h, w = tile_grid_size(labels.shape[0], labels.shape[1], self.tile_size)
        t = self.tile_size
        generator = self._noise_generator(labels)

        # Label histogram of each tile -> distribution over classes.
        tiles = resize_labels_to_tiles(labels, t).reshape(h, t, w, t).permute(0, 2, 1, 3).reshape(h * w, t * t)
        labelled = tiles != UNLABELLED
        counts = torch.zeros(h * w, num_classes, device=self.device)
        counts.scatter_add_(1, torch.where(labelled, tiles, 0), labelled.float())  # [h*w, C]
        totals = counts.sum(dim=1, keepdim=True)
        valid = totals[:, 0] > 0  # [h*w]
        distribution = counts / totals.clamp(min=1)

        # Label noise: a tile's whole distribution becomes one random class.
        flip = torch.rand(h * w, generator=generator).to(self.device) < self.config.label_noise
        random_class = torch.randint(num_classes, (h * w,), generator=generator).to(self.device)
        flip &= valid
        distribution[flip] = F.one_hot(random_class[flip], num_classes).float()
        return distribution.reshape(h, w, num_classes), valid.reshape(h, w, 1).float(), generator

    @torch.no_grad()
    def dense_features(
        self, image: Float[Tensor, "H W 3"], labels: Int[Tensor, "H W"] | None = None
    ) -> Float[Tensor, "h w D"]:
        """Tile features from ``labels`` (the image only fixes the size). All-unlabelled tiles are zero vectors."""
        cfg = self.config
        embeddings = self.class_embeddings()  # [C, D]
        distribution, valid_map, generator = self.tile_class_distribution(image, labels, embeddings.shape[0])
        h, w = distribution.shape[:2]
        features = distribution @ embeddings.float()  # [h, w, D]

        # Boundary mixing: blend with the mean over the valid tiles of the 3x3 neighbourhood (self included).
        if cfg.boundary_mixing > 0:
            channels_first = (features * valid_map).permute(2, 0, 1)[None]  # [1, D, h, w]
            sums = F.avg_pool2d(channels_first, 3, stride=1, padding=1, count_include_pad=True) * 9
            counts_3x3 = F.avg_pool2d(valid_map.permute(2, 0, 1)[None], 3, stride=1, padding=1) * 9
            neighbourhood = (sums / counts_3x3.clamp(min=1))[0].permute(1, 2, 0)  # [h, w, D]
            features = (1 - cfg.boundary_mixing) * features + cfg.boundary_mixing * neighbourhood

        if cfg.feature_noise > 0:
            noise = torch.randn(h, w, features.shape[-1], generator=generator).to(self.device)
            features = features + cfg.feature_noise * noise

        return F.normalize(features, dim=-1) * valid_map

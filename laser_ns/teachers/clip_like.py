"""A simulation of dense CLIP for tests, the demo and benchmarks: label maps in, CLIP-like tile features out.

Real CLIP semantics cannot be checked offline (no weights can be downloaded here), and a teacher that hands out
clean class embeddings measures a regime no user is in. This teacher keeps the generated scenes' exact labels as the
*content* of each tile and degrades it the way dense CLIP (MaskCLIP / SCLIP on ViT-B/16) is known to behave. Each
parameter of :class:`ClipLikeTeacherConfig` names the fact it imitates:

- **meaningful prompt structure** (:class:`StructuredTextEncoder`): a prompt's embedding is built from its words, the
  head noun weighing most, so "red apple" and "red mug" share their "red", a query of "apple" is close to the class
  "red apple", and the doubled prompt "apple apple" is close to "apple" but not equal to it;
- **the modality gap**: every text embedding shares a text direction and every tile feature an image direction, so
  unrelated prompts have cosines of about 0.6 to 0.7 with each other, tiles of different classes about 0.9, and a
  tile's cosine with its own class's text is about 0.3 with wrong classes a few hundredths behind;
- **colour and texture bias**: each tile carries a term from its mean colour (the text embedding of the nearest
  colour words) and its texture, so tiles of colour-similar classes get correlated features;
- **blur across tile boundaries**: each tile's class content is a Gaussian-weighted mix of its neighbours' (ViT patch
  tokens attend to their context);
- **large regions bleeding into small ones**: a tile whose classes cover little of its wider surroundings takes on
  part of those surroundings' content, so small objects are dominated by the large region around them (a patch
  token's attention is mostly spent on the many tokens of the big region);
- **view-consistent confusion**: each class's tiles carry a fixed offset on every class's weight, drawn from the seed
  and the class names and the same in every view (an object looks alike from nearby viewpoints, so dense CLIP confuses
  it with the same wrong class each time, and multi-view fusion cannot average that out);
- **view-dependent noise**: spatially correlated blobs of feature noise plus per-tile noise and wrong-class tiles, all
  different in every view (the part of dense CLIP's mistakes that changes with the viewpoint and that multi-view
  fusion can average out).

It is a simulation: what it reproduces is the *structure* of dense CLIP's errors, calibrated so that its own 2D
segmentation of the generated scenes is about as imperfect as dense CLIP's on real scenes (benchmarks/RESULTS.md,
"CLIP-like teacher calibration", says against which published figures). It proves nothing about real CLIP weights.
"""

import dataclasses
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from laser_ns.teachers.base import DenseTeacherConfig, resize_image_to_tiles
from laser_ns.teachers.label_map import LabelMapTeacher
from laser_ns.teachers.text import hashed_text_embedding

_FEATURE_FORMAT = 2
"""Bumped whenever the simulated features change (invalidates feature caches)."""

COLOUR_PROTOTYPES: dict[str, tuple[float, float, float]] = {
    "red": (0.8, 0.12, 0.1),
    "orange": (0.95, 0.55, 0.1),
    "yellow": (0.95, 0.85, 0.15),
    "green": (0.2, 0.65, 0.25),
    "blue": (0.15, 0.35, 0.85),
    "purple": (0.55, 0.2, 0.7),
    "pink": (0.95, 0.55, 0.7),
    "brown": (0.5, 0.32, 0.15),
    "white": (0.92, 0.92, 0.9),
    "grey": (0.55, 0.55, 0.55),
    "black": (0.08, 0.08, 0.08),
}
"""Colour words and a typical linear RGB of each: a tile's colour term is the text embedding of the nearest ones."""

FUNCTION_WORDS = frozenset({"a", "an", "the", "of", "photo", "picture", "image", "this", "that", "on", "in", "with"})
"""Template words ("a photo of a ...") that CLIP's text embedding weighs little."""


def _unit(name: str, dim: int) -> Tensor:
    """A fixed pseudo-random unit vector named ``name`` (sha256-derived, stable across machines)."""
    return hashed_text_embedding(f"laser_ns/clip-like/{name}", dim)


@dataclass(frozen=True)
class StructuredTextEncoder:
    """Text embeddings with the structure of CLIP's, from words instead of a model.

    ``embed(p) = normalise(text_modality * m_text + content(p) + phrasing * h(p))`` where ``content(p)`` is the
    normalised weighted sum of one fixed vector per word (head noun 1, other words ``modifier_weight``, template words
    ``function_word_weight``), ``m_text`` is the text side of the modality gap and ``h(p)`` a vector of the exact
    string, so two phrasings of the same words are close but not equal.
    """

    dim: int = 512
    """Channels (512 = CLIP ViT-B/16)."""
    text_modality: float = 1.5
    """Weight of the direction all text shares (modality gap): unrelated prompts get cosines of about 0.64."""
    modifier_weight: float = 0.6
    """Weight of words before the head noun ("red" in "red apple") relative to the head noun."""
    function_word_weight: float = 0.2
    """Weight of template words ("a photo of a")."""
    phrasing: float = 0.5
    """Weight of the exact string's own vector: "apple apple" has cosine about 0.93 with "apple"."""

    def words(self, prompt: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", prompt.lower())

    def content(self, prompt: str) -> Float[Tensor, " D"]:
        """Unit vector of a prompt's words (no modality direction, no phrasing): what an image of it shows."""
        words = self.words(prompt)
        if not words:
            return torch.zeros(self.dim)
        content_words = [w for w in words if w not in FUNCTION_WORDS] or words
        head = content_words[-1]
        total = torch.zeros(self.dim)
        for word in words:
            if word in FUNCTION_WORDS and word != head:
                weight = self.function_word_weight
            else:
                weight = 1.0 if word == head else self.modifier_weight
            total += weight * word_vector(word, self.dim)
        return F.normalize(total, dim=0)

    def embed(self, prompts: Sequence[str]) -> Float[Tensor, "C D"]:
        """Unit embedding of each prompt (on the CPU)."""
        if isinstance(prompts, str):
            raise TypeError(f"Expected a sequence of prompts, got the single string {prompts!r}; wrap it in a list.")
        modality = _unit("modality/text", self.dim)
        rows = [
            self.text_modality * modality + self.content(p) + self.phrasing * _unit(f"phrasing/{p}", self.dim)
            for p in prompts
        ]
        return F.normalize(torch.stack(rows), dim=-1) if rows else torch.zeros(0, self.dim)


def word_vector(word: str, dim: int) -> Float[Tensor, " D"]:
    """The fixed vector of one word (shared by the text and the image side)."""
    return _unit(f"word/{word}", dim)


def _hashed_normal(key: str) -> float:
    """A fixed standard normal sample named ``key`` (sha256 and Box-Muller: stable across machines and torch)."""
    digest = hashlib.sha256(f"laser_ns/clip-like/{key}".encode()).digest()
    u1, u2 = (((int.from_bytes(digest[i : i + 8], "little") >> 11) + 0.5) / 2.0**53 for i in (0, 8))
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def consistent_confusion_matrix(names: Sequence[str], seed: int) -> Float[Tensor, "C C"]:
    """Row c: the fixed standard-normal offset that the tiles of class ``names[c]`` get on each class's weight.

    Each entry is drawn from the seed and the two class names only, so it is the same in every view and does not
    change when other classes are added to the scene.
    """
    return torch.tensor([[_hashed_normal(f"confusion/{seed}/{a}\0{b}") for b in names] for a in names])


@dataclass
class ClipLikeTeacherConfig(DenseTeacherConfig):
    """Simulated dense CLIP: label maps and images in, CLIP-like tile features out (a calibrated simulation)."""

    _target: type = field(default_factory=lambda: ClipLikeTeacher)
    tile_size: int = 4
    """Pixels per tile. 4 on the 160x120 generated scenes gives a 40x30 grid: the ratio of ViT-B/16 on a capture of
    about 4000 pixels downsampled 5x (the 3D-OVS captures); 16 gives the coarse stress case."""
    text: StructuredTextEncoder = field(default_factory=StructuredTextEncoder)
    """Offline text encoder with CLIP's prompt structure (words, modality gap, phrasing)."""
    modality_gap: float = 6.0
    """Weight of the direction every tile feature shares (CLIP's image-side modality gap): tiles of different classes
    get cosines of about 0.9 with each other, and a pure tile about 0.3 with its own class's text."""
    text_alignment: float = 1.85
    """Weight of the text direction in tile features: the cosine every class's text gets from every tile (about 0.22),
    so the right class wins by a few hundredths, as with dense CLIP."""
    colour_bias: float = 0.7
    """Weight of the tile's colour term (text vectors of the nearest colour words), relative to its class content 1:
    CLIP's colour bias, which correlates tiles of colour-similar classes."""
    texture_bias: float = 0.3
    """Weight of the tile's texture term (plain vs patterned, from the luminance spread in the tile)."""
    context_blur: float = 1.0
    """Standard deviation, in tiles, of the Gaussian that mixes each tile's class content with its neighbours'
    (patch tokens attend to their context, so dense CLIP's maps are blurred across object edges)."""
    region_bleed: float = 0.5
    """Largest share of a tile's class content replaced by its wide surroundings' (region_bleed_scale), scaled by
    how little of those surroundings its own classes cover: dense CLIP lets large regions bleed into small objects
    (their patch tokens attend mostly to the many tokens of the big region), so small objects are harder than large."""
    region_bleed_scale: float = 3.0
    """Standard deviation, in tiles, of the wide Gaussian that measures a tile's surroundings for region_bleed."""
    consistent_confusion: float = 0.15
    """Std of fixed offsets on every class's weight in the tiles of each class (one per pair of class names, from the
    seed), the same in every view: dense CLIP confuses an object with the same wrong class from every nearby viewpoint,
    so this part of its error survives multi-view fusion (equal to view_noise: half the confusion variance)."""
    view_noise: float = 0.15
    """Std of spatially correlated noise on each class's weight in a tile, new in every view: dense CLIP confuses
    concepts in blobs that change with the viewpoint (a tile's true class has weight 1)."""
    view_noise_scale: float = 4.0
    """Correlation length of the view noise, in tiles."""
    label_noise: float = 0.05
    """Probability that a tile's content is another, random class (outright misclassified tiles)."""
    feature_noise: float = 0.3
    """Std of independent per-tile noise (its norm, relative to the unit class content)."""
    seed: int = 0
    """Seed of every noise: mixed with a hash of each label map for the view-dependent ones (each view gets its own)
    and with the class names for the consistent confusion."""


class ClipLikeTeacher(LabelMapTeacher):
    """Dense teacher that simulates dense CLIP from the label maps (see the module docstring)."""

    config: ClipLikeTeacherConfig

    def __init__(self, config: ClipLikeTeacherConfig, class_names: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(config, class_names=class_names, **kwargs)  # type: ignore[arg-type]

    @staticmethod
    def _check_config(config: ClipLikeTeacherConfig) -> None:  # type: ignore[override]
        """Refuse values outside their range, naming the option."""
        names = ("modality_gap", "text_alignment", "colour_bias", "texture_bias", "context_blur", "view_noise")
        for name in (*names, "consistent_confusion", "feature_noise"):
            if getattr(config, name) < 0:
                raise ValueError(f"ClipLikeTeacher {name} must be >= 0, got {getattr(config, name)}.")
        if not 0.0 <= config.label_noise <= 1.0:
            raise ValueError(f"ClipLikeTeacher label_noise is a probability in [0, 1], got {config.label_noise}.")
        if not 0.0 <= config.region_bleed <= 1.0:
            raise ValueError(
                f"ClipLikeTeacher region_bleed is a share of a tile's content in [0, 1], got {config.region_bleed}."
            )
        if config.region_bleed_scale < 1:
            raise ValueError(
                f"ClipLikeTeacher region_bleed_scale is in tiles and must be >= 1, got {config.region_bleed_scale}."
            )
        if config.view_noise_scale < 1:
            raise ValueError(
                f"ClipLikeTeacher view_noise_scale is in tiles and must be >= 1, got {config.view_noise_scale}."
            )
        if config.tile_size < 1:
            raise ValueError(f"ClipLikeTeacher tile_size is in pixels and must be >= 1, got {config.tile_size}.")

    @property
    def feature_dim(self) -> int:  # type: ignore[override]
        return self.config.text.dim

    def identity(self) -> dict[str, Any]:
        """Every setting of the config (so a new option can never be left out of the cache key) and the classes."""
        settings = {k: v for k, v in dataclasses.asdict(self.config).items() if k != "_target"}
        return {"teacher": "clip_like", "format": _FEATURE_FORMAT, "class_names": self.class_names, **settings}

    def encode_text(self, prompts: Sequence[str]) -> Float[Tensor, "C D"]:
        """Structured embeddings: any prompt means something (its words), unlike hashed text."""
        return self.config.text.embed(list(prompts)).to(self.device)

    def _colour_and_texture(self, image: Float[Tensor, "H W 3"], h: int, w: int) -> Float[Tensor, "h w D"]:
        """Per tile: colour_bias x (colour words near the tile's mean colour) + texture_bias x (plain or patterned)."""
        cfg, dim, t = self.config, self.config.text.dim, self.tile_size
        pixels = resize_image_to_tiles(image.to(self.device).float(), t)  # [3, h*t, w*t]
        mean = F.avg_pool2d(pixels[None], t)[0].permute(1, 2, 0)  # [h, w, 3]
        luminance = pixels.mean(dim=0, keepdim=True)[None]  # [1, 1, h*t, w*t]
        spread = (F.avg_pool2d(luminance**2, t) - F.avg_pool2d(luminance, t) ** 2).clamp_min(0).sqrt()[0, 0]  # [h, w]
        prototypes = torch.tensor(list(COLOUR_PROTOTYPES.values()), device=self.device)  # [K, 3]
        colour_vectors = torch.stack([word_vector(name, dim) for name in COLOUR_PROTOTYPES]).to(self.device)  # [K, D]
        distance = ((mean[..., None, :] - prototypes) ** 2).sum(dim=-1)  # [h, w, K]
        weights = torch.softmax(-distance / (2 * 0.12**2), dim=-1)
        patterned = (spread / 0.08).clamp(0, 1)[..., None]  # [h, w, 1]
        texture = patterned * word_vector("patterned", dim).to(self.device) + (1 - patterned) * word_vector(
            "plain", dim
        ).to(self.device)
        return cfg.colour_bias * weights @ colour_vectors + cfg.texture_bias * texture

    @staticmethod
    def _blur(values: Float[Tensor, "h w K"], valid: Float[Tensor, "h w 1"], sigma: float) -> Float[Tensor, "h w K"]:
        """Gaussian mix (std ``sigma`` tiles) of each valid tile with its valid neighbours."""
        if sigma <= 0:
            return values
        radius = max(1, math.ceil(2.5 * sigma))
        offsets = torch.arange(-radius, radius + 1, device=values.device, dtype=values.dtype)
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()

        def smooth(x: Tensor) -> Tensor:  # [h, w, K] -> same, separable, zero padding
            c = x.permute(2, 0, 1)[:, None]  # [K, 1, h, w]
            c = F.conv2d(c, kernel.view(1, 1, -1, 1), padding=(radius, 0))
            c = F.conv2d(c, kernel.view(1, 1, 1, -1), padding=(0, radius))
            return c[:, 0].permute(1, 2, 0)

        return smooth(values * valid) / smooth(valid).clamp_min(1e-6) * valid

    @torch.no_grad()
    def dense_features(
        self, image: Float[Tensor, "H W 3"], labels: Int[Tensor, "H W"] | None = None
    ) -> Float[Tensor, "h w D"]:
        """CLIP-like tile features of one view; all-unlabelled tiles are zero vectors (no target), as in the parent."""
        cfg, dim = self.config, self.config.text.dim
        names = self.class_names
        num_classes = len(names)

        # 1. Class distribution of each tile's pixels, with wrong-class tiles; blur across tiles.
        distribution, valid, generator = self.tile_class_distribution(image, labels, num_classes)
        h, w = distribution.shape[:2]
        tiles = distribution
        distribution = self._blur(tiles, valid, cfg.context_blur)

        # 2. Size-dependent bleeding: a tile takes on its wide surroundings' content in proportion to how little of
        # those surroundings its own classes cover, so a large region hardly moves and a small object inside it does.
        if cfg.region_bleed > 0:
            surroundings = self._blur(tiles, valid, cfg.region_bleed_scale)  # local area fraction of each class
            own_share = (tiles * surroundings).sum(dim=-1, keepdim=True)  # [h, w, 1]
            bleed = cfg.region_bleed * (1 - own_share).clamp(0, 1)
            distribution = (1 - bleed) * distribution + bleed * surroundings

        # 3. View-consistent confusion: each class's tiles get the same offsets on every class's weight in every view.
        if cfg.consistent_confusion > 0:
            offsets = consistent_confusion_matrix(names, cfg.seed).to(self.device)  # [C, C], row = true class
            distribution = distribution + cfg.consistent_confusion * tiles @ offsets

        # 4. View-dependent confusion: spatially correlated blobs of noise on each class's weight. Isotropic noise in
        # 512 dimensions would barely move a tile between two classes; CLIP's mistakes are confusions between concepts.
        if cfg.view_noise > 0:
            coarse = (math.ceil(h / cfg.view_noise_scale) + 1, math.ceil(w / cfg.view_noise_scale) + 1)
            blobs = torch.randn(1, num_classes, *coarse, generator=generator).to(self.device)
            blobs = F.interpolate(blobs, size=(h, w), mode="bicubic", align_corners=True)[0].permute(1, 2, 0)
            distribution = distribution + cfg.view_noise * blobs * valid

        # 5. Class content, the two modality directions, colour and texture, per-tile noise.
        content = torch.stack([cfg.text.content(name) for name in names]).to(self.device)  # [C, D]
        features = distribution @ content  # [h, w, D]
        features = features + cfg.modality_gap * _unit("modality/image", dim).to(self.device)
        features = features + cfg.text_alignment * _unit("modality/text", dim).to(self.device)
        features = features + self._colour_and_texture(image, h, w)
        if cfg.feature_noise > 0:
            noise = torch.randn(h, w, dim, generator=generator).to(self.device)
            features = features + cfg.feature_noise * noise / math.sqrt(dim)
        return F.normalize(features, dim=-1) * valid

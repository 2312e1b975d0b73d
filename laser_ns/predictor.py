"""The language predictor: text, queries, negatives and a stable PCA basis, answering every consumer alike.

The model renders features (F) and the label volume's channel distribution once per ray; this small stateful object
turns them into the user-facing outputs (``segmentation``, ``relevancy_<i>``, ``composited_<i>``, ``clip_pca``, ...).
The viewer panel, ``ns-render``, laser-export/laser-locate and the evaluation all talk to this one object (owned by
the model as ``model.predictor``), so they agree on the queries, the negatives and the colours.

Its text embeddings and PCA basis are buffers: a checkpoint scores its classes before any teacher is loaded, and the
PCA colours of ``ns-render`` are those of the run that saved it. The PCA basis is fitted on a fixed sample of training
rays (chosen by the pipeline, :meth:`laser_ns.pipeline.LaserPipeline.fit_feature_pca`), not on whatever chunk is
rendered first, so the live viewer and ``ns-render`` show the same colours for the same checkpoint.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from nerfstudio.utils import colormaps
from torch import Tensor, nn

from laser_ns.components.relevancy import class_colours, closed_set_segmentation, label_volume_scores, lerf_relevancy
from laser_ns.conventions import CANONICAL_NEGATIVES, QUERIES_ENV, QUERY_SEPARATOR

QueryMode = Literal["relevancy", "segmentation"]


def clean_text(text: str) -> str:
    """NFC-normalised text with control and format characters (newlines, tabs, zero-width) turned into spaces."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    return " ".join(text.split())


def parse_queries(text: str) -> list[str]:
    """The non-empty, cleaned pieces of ``text`` split at ``;`` ("red apple; table" -> ["red apple", "table"])."""
    return [piece for piece in (clean_text(part) for part in text.split(QUERY_SEPARATOR)) if piece]


def split_texts(text: str | None) -> list[str]:
    """'red mug; chair' -> ['red mug', 'chair'] (blank entries dropped, order kept, duplicates removed)."""
    return list(dict.fromkeys(parse_queries(text or "")))


@dataclass
class LanguagePredictorConfig(InstantiateConfig):
    """What the model answers: queries, negatives, the composite threshold and the PCA sample."""

    _target: type = field(default_factory=lambda: LanguagePredictor)
    queries: tuple[str, ...] = ()
    """Text queries rendered as relevancy_<i>; empty means the scene's classes."""
    negatives: tuple[str, ...] = CANONICAL_NEGATIVES
    """Canonical negative phrases for open-vocabulary relevancy."""
    composite_threshold: float = 0.5
    """Relevancy above this is highlighted in composited_<i>."""
    segment_with_label_volume: bool = False
    """segmentation / segmentation_class (what laser-eval scores) from the label volume instead of the features."""
    pca_views: int = 8
    """clip_pca: training views (evenly spaced) the PCA basis is fitted on."""
    pca_rays: int = 4096
    """clip_pca: rays (a fixed random sample of those views' pixels) the PCA basis is fitted on."""


class LanguagePredictor(nn.Module):
    """Text embeddings, queries and the PCA basis; turns rendered features into the user-facing outputs.

    Built by ``LanguagePredictorConfig.setup(class_names=..., dim=..., teacher=...)``; the teacher (owned by the
    pipeline, possibly None when only rendering a checkpoint) is kept out of the module tree.
    """

    def __init__(self, config: LanguagePredictorConfig, class_names: Sequence[str], dim: int, teacher=None) -> None:
        super().__init__()
        self.config = config
        self.class_names: list[str] = list(class_names)
        self.dim = dim
        self.__dict__["teacher"] = teacher
        num_classes = len(self.class_names)
        self.register_buffer("class_text", torch.zeros(num_classes, dim))
        self.register_buffer("class_text_aug", torch.zeros(num_classes, dim))
        self.register_buffer("class_colors", class_colours(self.class_names))
        self.register_buffer("negative_text", torch.zeros(len(config.negatives), dim))
        self.register_buffer("query_text", torch.zeros(0, dim), persistent=False)
        # clip_pca: mean [1, D], basis [D, 3], 1% and 99% quantiles [3] of the projected sample, and whether fitted
        self.register_buffer("pca_mean", torch.zeros(1, dim))
        self.register_buffer("pca_basis", torch.zeros(dim, 3))
        self.register_buffer("pca_low", torch.zeros(3))
        self.register_buffer("pca_high", torch.ones(3))
        self.register_buffer("pca_fitted", torch.zeros((), dtype=torch.bool))
        self.queries: list[str] = []
        self.negatives: list[str] = list(config.negatives)
        self.query_mode: QueryMode = "relevancy"  # or "segmentation": typed queries become extra classes
        self.composite_threshold: float = config.composite_threshold
        self.segment_with_label_volume: bool = config.segment_with_label_volume  # the viewer's toggle changes it
        if teacher is not None:
            self._encode_scene_text()

    @property
    def teacher(self):
        return self.__dict__["teacher"]

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def _encode_scene_text(self) -> None:
        device = self.class_text.device
        if self.class_names:
            self.class_text = self.teacher.encode_text(self.class_names).float().to(device)
            self.class_text_aug = self.teacher.encode_text_augmented(self.class_names).float().to(device)
        self.negative_text = self.teacher.encode_text(list(self.config.negatives)).float().to(device)
        from_env = os.environ.get(QUERIES_ENV)
        if from_env is not None:
            self.set_queries(parse_queries(from_env))
        else:
            self.set_queries(list(self.config.queries) or self.class_names)

    @torch.no_grad()
    def set_queries(self, queries: Sequence[str]) -> None:
        """Sets the texts rendered as ``relevancy_<i>``; encoded once here, scored against every frame."""
        queries = [q.strip() for q in queries if q.strip()]
        if queries == self.class_names:
            text = self.class_text.clone()
        elif queries:
            text = self._encode(queries)
        else:
            text = self.class_text.new_zeros(0, self.dim)
        self.queries, self.query_text = queries, text

    @torch.no_grad()
    def set_negatives(self, negatives: Sequence[str]) -> None:
        """Sets the canonical negative phrases of open-vocabulary relevancy (empty: LERF's defaults)."""
        negatives = [n.strip() for n in negatives if n.strip()] or list(CANONICAL_NEGATIVES)
        self.negative_text = self._encode(negatives)
        self.negatives = negatives

    def _encode(self, texts: Sequence[str]) -> Tensor:
        if self.teacher is None:
            raise RuntimeError("Encoding text needs the pipeline's teacher; none was given to the model.")
        return self.teacher.encode_text(list(texts)).float().to(self.class_text.device)

    def segmentation_classes(self) -> tuple[list[str], Tensor]:
        """Names and text embeddings of the closed-set classes: the scene's, plus typed queries in segmentation mode."""
        if self.query_mode == "segmentation" and self.queries:
            extra = [q for q in self.queries if q not in self.class_names]
            extra_text = self.query_text[[self.queries.index(q) for q in extra]]
            return self.class_names + extra, torch.cat([self.class_text, extra_text])
        return list(self.class_names), self.class_text

    def segmentation_colours(self) -> Float[Tensor, "C 3"]:
        """Colours of :meth:`segmentation_classes`: the scene's classes keep theirs (``class_colors``, saved with the
        run), typed queries get colours that fit their names and differ from those."""
        names, _ = self.segmentation_classes()
        extra = names[len(self.class_names) :]
        colours = self.class_colors.float().cpu()
        if extra:
            colours = torch.cat([colours, class_colours(extra, taken=colours.tolist())])
        return colours.to(self.class_colors.device)

    def segmentation_legend(self) -> list[tuple[str, tuple[int, int, int]]]:
        """(class name, 0-255 RGB) of every colour the segmentation output can show."""
        names, _ = self.segmentation_classes()
        colors = (self.segmentation_colours() * 255).round().int().tolist()
        return [(name, tuple(color)) for name, color in zip(names, colors, strict=True)]

    # ------------------------------------------------------------------ outputs
    def outputs(
        self,
        features: Float[Tensor, "R D"],
        scored: Float[Tensor, "R D"],
        label_dist: Float[Tensor, "R D"] | None,
        rgb: Float[Tensor, "R 3"],
    ) -> dict[str, Tensor]:
        """The language outputs of R rays: ``features`` (F) give clip_pca, ``scored`` (F, or adapter(F)) is what text
        is scored against, ``label_dist`` is the label volume's channel distribution."""
        outputs: dict[str, Tensor] = {"clip_pca": self.pca_colors(features)}

        # Closed set: the scene's classes (plus typed queries in segmentation mode), from features or label volume.
        names, text = self.segmentation_classes()
        if names:
            colors = self.segmentation_colours().to(rgb)
            if self.segment_with_label_volume and label_dist is not None:
                classes = label_volume_scores(label_dist, text).argmax(dim=-1)
            else:
                classes = closed_set_segmentation(scored, text)  # [R]
            outputs["segmentation"] = colors[classes]
            outputs["segmentation_class"] = classes[:, None].float()
            if label_dist is not None and len(self.class_names) > 0:
                lv_classes = label_volume_scores(label_dist, self.class_text).argmax(dim=-1)
                outputs["segmentation_label_volume"] = self.class_colors[lv_classes]

        # Open vocabulary: one relevancy map per query, scored against the features rendered once for all.
        if self.query_text.shape[0] > 0:
            relevancy = lerf_relevancy(scored, self.query_text, self.negative_text)  # [R, P]
            for i in range(relevancy.shape[-1]):
                outputs[f"relevancy_{i}"] = relevancy[:, i : i + 1]
                outputs[f"composited_{i}"] = self.composite(rgb, relevancy[:, i : i + 1])
        return outputs

    def composite(self, rgb: Float[Tensor, "R 3"], relevancy: Float[Tensor, "R 1"]) -> Float[Tensor, "R 3"]:
        """RGB with the relevant region (relevancy above the threshold) tinted by a turbo colormap."""
        threshold = self.composite_threshold
        strength = ((relevancy - threshold) / max(1.0 - threshold, 1e-6)).clamp(0, 1)
        heat = colormaps.apply_colormap(strength, colormaps.ColormapOptions(colormap="turbo"))
        mask = relevancy > threshold
        return torch.where(mask, 0.35 * rgb + 0.65 * heat, rgb)

    # ------------------------------------------------------------------ PCA colours
    @torch.no_grad()
    def fit_pca(self, features: Float[Tensor, "N D"]) -> None:
        """Fits the 3-component projection of clip_pca to ``features`` (the fixed sample of training rays).

        An exact eigendecomposition of the D x D covariance: deterministic, and it draws nothing from the global RNG
        (a randomised PCA would shift the random stream of a training run it is fitted in)."""
        unit = F.normalize(features.float(), dim=-1)
        mean = unit.mean(dim=0, keepdim=True)  # [1, D]
        centred = (unit - mean).double()
        _, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues; [D, D]
        basis = vectors[:, -3:].flip(-1).float()  # [D, 3] the three largest components, largest first
        projected = (unit - mean) @ basis  # [N, 3]
        self.pca_mean.copy_(mean)
        self.pca_basis.copy_(basis)
        self.pca_low.copy_(projected.quantile(0.01, dim=0))
        self.pca_high.copy_(projected.quantile(0.99, dim=0))
        self.pca_fitted.fill_(True)

    @torch.no_grad()
    def pca_colors(self, features: Float[Tensor, "R D"]) -> Float[Tensor, "R 3"]:
        """Features projected on the fitted basis, as colours; mid-grey until a basis is fitted. The pipeline fits it
        (:meth:`laser_ns.pipeline.LaserPipeline.fit_feature_pca`) when language training starts, before every
        checkpoint, and when it loads a checkpoint saved without one: the predictor never renders."""
        if not bool(self.pca_fitted):
            return features.new_full((features.shape[0], 3), 0.5)
        unit = F.normalize(features, dim=-1)
        return (
            ((unit - self.pca_mean) @ self.pca_basis - self.pca_low) / (self.pca_high - self.pca_low).clamp(min=1e-6)
        ).clamp(0, 1)

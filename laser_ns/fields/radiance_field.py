"""The radiance field: nerfacto's own modules, built by nerfacto's own code, minus its LPIPS metric.

``NerfactoModel.populate_modules`` builds the field, camera optimizer, proposal networks, samplers, renderers and
metrics under the attribute names that nerfacto checkpoints use, so a nerfacto run loads into a Laser model
(``--pipeline.model.geometry-checkpoint``). It also builds an LPIPS metric whose network weights are downloaded at
construction, which would make every Laser model need the internet; Laser does not report LPIPS, so that one
construction is replaced by :class:`LpipsNotComputed` while nerfacto's code runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from torch.nn import Parameter


class LpipsNotComputed:
    """Stands in for torchmetrics' LPIPS in a Laser model: constructing it downloads weights, so it is never built."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs):
        raise RuntimeError("laser_ns does not compute LPIPS (its weights would be downloaded); use psnr and ssim.")


@contextmanager
def _without_lpips() -> Iterator[None]:
    """While active, nerfacto's ``from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity`` gets
    :class:`LpipsNotComputed`."""
    import torchmetrics.image.lpip as lpip

    original = lpip.LearnedPerceptualImagePatchSimilarity
    lpip.LearnedPerceptualImagePatchSimilarity = LpipsNotComputed  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        lpip.LearnedPerceptualImagePatchSimilarity = original  # type: ignore[misc]


class LpipsSkipped:
    """Stands in for LPIPS in :class:`OfflineNerfactoModel`: its evaluations report lpips as NaN (not computed)."""

    def __call__(self, *args, **kwargs):
        import torch

        return torch.tensor(float("nan"))


class OfflineNerfactoModel(NerfactoModel):
    """nerfacto itself, without the LPIPS metric whose AlexNet weights nerfacto downloads when it is built: it trains
    offline (``ns-train nerfacto-lite``), and its evaluations report psnr and ssim, lpips as NaN."""

    def populate_modules(self) -> None:
        with _without_lpips():
            super().populate_modules()
        self.lpips = LpipsSkipped()


@dataclasses.dataclass
class OfflineNerfactoModelConfig(NerfactoModelConfig):
    """nerfacto's options; builds :class:`OfflineNerfactoModel`."""

    _target: type = dataclasses.field(default_factory=lambda: OfflineNerfactoModel)


_NO_EFFECT = {
    "orientation_loss_mult": "it weighs a normals loss, and laser predicts no normals",
    "pred_normal_loss_mult": "it weighs a normals loss, and laser predicts no normals",
    "hidden_dim_transient": "nerfacto builds its field without the transient network this sizes",
    "enable_collider": "nerfacto always clips rays with --pipeline.model.near-plane / far-plane",
    "collider_params": "nerfacto always clips rays with --pipeline.model.near-plane / far-plane",
    "loss_coefficients": "nerfacto's losses use the *-loss-mult options instead",
    "prompt": "laser's text comes from --pipeline.model.predictor.queries (or the viewer panel)",
}
"""Options that ``ns-train laser --help`` inherits from nerfacto and that would do nothing, with the reason."""


def refuse_unsupported_options(config) -> None:
    """Inherited nerfacto options that Laser does not implement, or that nerfacto itself ignores, are refused when
    changed, instead of being silently ignored."""
    if config.predict_normals:
        raise ValueError(
            "--pipeline.model.predict-normals True is not supported by laser (its outputs and losses have no normals). "
            "Leave it False, or train normals with `ns-train nerfacto` and load that run's geometry with "
            "--pipeline.model.geometry-checkpoint."
        )
    defaults = NerfactoModelConfig()
    for name, reason in _NO_EFFECT.items():
        if getattr(config, name) != getattr(defaults, name):
            flag = "--pipeline.model." + name.replace("_", "-")
            raise ValueError(
                f"{flag} is {getattr(config, name)!r} but has no effect in laser: {reason}. Leave it at its default "
                f"({getattr(defaults, name)!r})."
            )


def populate_nerfacto_modules(model: NerfactoModel, implementation: Literal["tcnn", "torch"]) -> None:
    """Runs ``NerfactoModel.populate_modules`` on ``model`` with the resolved hash-grid ``implementation`` and
    without LPIPS. ``model.config`` is left as it was (nerfacto reads a copy with the resolved implementation)."""
    refuse_unsupported_options(model.config)
    config = model.config
    model.config = dataclasses.replace(config, implementation=implementation)
    try:
        with _without_lpips():
            NerfactoModel.populate_modules(model)
    finally:
        model.config = config
    del model.lpips  # the stand-in: nothing computes LPIPS here


def appearance_parameters(model: NerfactoModel) -> list[Parameter]:
    """Colour: the nerfacto field's colour head and appearance embedding."""
    params = list(model.field.mlp_head.parameters())
    if hasattr(model.field, "embedding_appearance"):
        params += list(model.field.embedding_appearance.parameters())
    return params


def field_density_parameters(model: NerfactoModel) -> list[Parameter]:
    """The nerfacto field's parameters that are not its colour head: density grid and MLP."""
    colour_head = {id(p) for p in appearance_parameters(model)}
    return [p for p in model.field.parameters() if id(p) not in colour_head]


def density_parameters(model: NerfactoModel) -> list[Parameter]:
    """Geometry: the field's density parameters and the proposal networks."""
    return field_density_parameters(model) + list(model.proposal_networks.parameters())

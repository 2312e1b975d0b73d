"""Choosing between tiny-cuda-nn and nerfstudio's pure-torch hash grids and MLPs."""

from __future__ import annotations

import importlib.util
from typing import Literal

import torch
from nerfstudio.utils.rich_utils import CONSOLE

Implementation = Literal["auto", "tcnn", "torch"]

_announced = False


def resolve_implementation(requested: Implementation) -> Literal["tcnn", "torch"]:
    """'auto' uses tiny-cuda-nn when it is installed and CUDA is available, else the torch path (logged once)."""
    global _announced
    has_tcnn = importlib.util.find_spec("tinycudann") is not None and torch.cuda.is_available()
    if requested == "torch":
        return "torch"
    if requested == "tcnn" and not has_tcnn:
        raise RuntimeError(
            "implementation='tcnn' was requested but tiny-cuda-nn is not usable here (it needs CUDA and the "
            "tinycudann package; see the README). Use --pipeline.model.implementation auto or torch."
        )
    if has_tcnn:
        return "tcnn"
    if not _announced:
        CONSOLE.print("[laser_ns] tiny-cuda-nn not available: using the pure-torch hash grid and MLPs (slower).")
        _announced = True
    return "torch"

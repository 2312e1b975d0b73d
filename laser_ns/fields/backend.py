"""Choosing between tiny-cuda-nn and nerfstudio's pure-torch hash grids and MLPs."""

from __future__ import annotations

import importlib.util
from typing import Literal

import torch
from nerfstudio.utils.rich_utils import CONSOLE

Implementation = Literal["auto", "tcnn", "torch"]

_announced = False


def check_tcnn_device(device: torch.device | str) -> None:
    """tiny-cuda-nn runs only on CUDA: a RuntimeError with the fix when ``implementation='tcnn'`` meets another
    device. Shared by the check before a run starts (laser_ns/device.py) and the model's construction."""
    device_type = torch.device(device).type
    if device_type != "cuda":
        raise RuntimeError(
            f"--pipeline.model.implementation tcnn needs CUDA, but this run uses device '{device_type}' (tiny-cuda-nn "
            "needs a CUDA device). Pass --pipeline.model.implementation torch (or auto), or --machine.device-type cuda."
        )


def resolve_implementation(
    requested: Implementation, device: torch.device | str | None = None
) -> Literal["tcnn", "torch"]:
    """'auto' uses tiny-cuda-nn when it is installed and the model trains on a CUDA device, else the torch path.

    ``device`` is where the model will run (the pipeline's device). tiny-cuda-nn only runs on CUDA, so with a CPU
    device 'auto' picks torch even on a machine that has a GPU and tinycudann, and 'tcnn' is refused.
    """
    global _announced
    on_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    has_tcnn = importlib.util.find_spec("tinycudann") is not None and torch.cuda.is_available()
    if requested == "torch":
        return "torch"
    if requested == "tcnn":
        if device is not None:
            check_tcnn_device(device)
        if not has_tcnn:
            raise RuntimeError(
                "implementation='tcnn' was requested but tiny-cuda-nn is not usable here (it needs CUDA and the "
                "tinycudann package; see the README). Use --pipeline.model.implementation auto or torch."
            )
        return "tcnn"
    if has_tcnn and on_cuda:
        return "tcnn"
    if not _announced:
        reason = "the model runs on the CPU" if has_tcnn else "tiny-cuda-nn not available"
        CONSOLE.print(f"[laser_ns] {reason}: using the pure-torch hash grid and MLPs.")
        _announced = True
    return "torch"

"""Refuse a training run whose device is not there, before any work, with the flags that fix it.

``laser`` (and every 3D-OVS preset) trains on ``--machine.device-type cuda`` with nerfstudio's full-size grids. On a
machine without CUDA, torch would only fail inside the trainer with "Found no NVIDIA driver", after the config is
saved and the data loaded. We refuse instead of switching to the CPU on our own: a nerfstudio user gets the device
they asked for (``ns-train nerfacto`` never switches either), and the paper's settings silently moved to a CPU would
take days instead of an hour. The message names the two ways forward.

:func:`check_training_device` is called by ``laser-train`` before it starts, and by
:class:`laser_ns.trainer_config.LaserTrainerConfig` when ``ns-train laser`` saves its config, so both refuse before
the run folder is written.
"""

from __future__ import annotations

from typing import Any

from laser_ns.errors import UserError


class DeviceUnavailableError(UserError, RuntimeError):
    """The run asks for a device (or backend) this machine does not have; the message gives the flags to use."""


CPU_FLAGS = "--machine.device-type cpu --pipeline.model.implementation torch"
"""The options that move a ``laser`` run to the CPU with the pure-torch hash grids."""


def _cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def refuse_several_devices(world_size: int, device_type: str) -> None:
    """Several processes train on CUDA GPUs only (nerfstudio's launcher asserts CUDA; on a CPU one process already
    uses every core, and MPS has one device). Refused up front on any other device."""
    if world_size > 1 and device_type != "cuda":
        raise DeviceUnavailableError(
            f"This run asks for {world_size} processes (--machine.num-devices or --machine.num-machines above 1) on "
            f"--machine.device-type {device_type}. Several processes train on CUDA GPUs only: nerfstudio's launcher "
            "needs CUDA, and on a CPU one process already uses every core. Train with --machine.num-devices 1, or "
            "on GPUs with --machine.device-type cuda."
        )


def check_training_device(config: Any, command: str = "ns-train") -> None:
    """Raise :class:`DeviceUnavailableError` when ``config`` (a nerfstudio TrainerConfig) cannot train here.

    Checks that ``config.machine.device_type`` exists on this machine with ``config.machine.num_devices`` devices,
    and that an explicit ``--pipeline.model.implementation tcnn`` is not combined with a device other than CUDA.
    ``command`` is how the user started the run (``ns-train laser`` or ``laser-train bed``), quoted in the message.
    """
    import torch

    machine = config.machine
    device_type = machine.device_type
    method = getattr(config, "method_name", None) or "this method"
    move_to_cpu = (
        f"To train on this machine's CPU, add `{CPU_FLAGS}` to `{command}` (slow with full-size grids), "
        "or train `laser-lite`, whose grids are sized for a CPU."
    )
    if device_type == "cuda":
        found = _cuda_device_count()
        if found == 0:
            build = f"torch {torch.__version__}, " + (
                f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            )
            raise DeviceUnavailableError(
                f"{method} trains on --machine.device-type cuda, but torch finds no CUDA device here ({build}). "
                + move_to_cpu
            )
        if machine.num_devices > found:
            raise DeviceUnavailableError(
                f"--machine.num-devices {machine.num_devices} asks for {machine.num_devices} CUDA devices, but torch "
                f"finds {found}. Pass --machine.num-devices {found} (or fewer)."
            )
    elif device_type == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            "--machine.device-type mps is set, but torch finds no Apple MPS device here. " + move_to_cpu
        )
    refuse_several_devices(machine.num_devices * machine.num_machines, device_type)
    implementation = getattr(getattr(getattr(config, "pipeline", None), "model", None), "implementation", None)
    if implementation == "tcnn":
        from laser_ns.fields.backend import check_tcnn_device

        try:
            check_tcnn_device(device_type)
        except RuntimeError as error:
            raise DeviceUnavailableError(str(error)) from None

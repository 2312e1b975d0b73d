"""Laser under nerfstudio's DDP launcher (``ns-train laser --machine.num-devices N``).

nerfstudio wraps a model in DistributedDataParallel and calls only its ``forward`` through the wrapper; the losses are
computed afterwards, outside it. Laser's adapter, label-volume and self-cross losses use parameters that the render
does not, so under that wrapping their gradients would never be reduced (or backward fails: a parameter marked unused
in forward receives a gradient). :class:`TrainStep` puts the whole step, render, metrics and losses, inside one
``forward``, and :func:`wrap_train_step` wraps that in DDP instead. The model itself stays unwrapped, so a run's
checkpoint has the same keys whether it trained on one device or several.

What else changes with several processes, and where:

- the teacher's features are computed once: each rank computes its share of the images (image ``i`` on rank
  ``i % world_size``) into the feature cache, waits for the others, then reads them all (``LaserDataManager``);
- each rank samples its own rays and patches (nerfstudio seeds rank ``r`` with ``--machine.seed + r``);
- DDP broadcasts rank 0's parameters and buffers when it wraps the step and averages the gradients of every step, so
  phases, freezing, schedules and the label volume behave as on one device with a ``world_size`` times larger batch;
- only rank 0 writes checkpoints (nerfstudio) and runs the periodic evaluations (:class:`LaserTrainer`).

:func:`launch_on_cpu` starts ranks on the CPU with the ``gloo`` backend. nerfstudio's launcher asserts CUDA, so this
is the same process-group setup, for the two-process test and for checking a change without GPUs; training on a CPU
gains nothing from several processes (one already uses every core), so ``ns-train`` refuses it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    """Number of training processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def barrier() -> None:
    """Waits for every rank (nothing to wait for in a single process)."""
    if world_size() > 1:
        from nerfstudio.utils import comms

        comms.synchronize()


class TrainStep(nn.Module):
    """One training step of ``model`` as a module: render, metrics and losses in one ``forward``, so that DDP sees
    every parameter a loss uses (the adapter's and the label volume's too) and reduces their gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ray_bundle: Any, batch: dict) -> tuple[dict, dict[str, Tensor], dict[str, Tensor]]:
        outputs = self.model(ray_bundle)
        metrics = self.model.get_metrics_dict(outputs, batch)
        losses = self.model.get_loss_dict(outputs, batch, metrics)
        average_running_buffers(self.model)
        return outputs, losses, metrics


def running_buffers(model: nn.Module) -> list[Tensor]:
    """The buffers a training step updates from its batch (running means), as modules declare them in a
    ``running_buffers`` tuple of names."""
    found = []
    for module in model.modules():
        for name in getattr(module, "running_buffers", ()):
            found.append(getattr(module, name))
    return found


@torch.no_grad()
def average_running_buffers(model: nn.Module) -> None:
    """Averages the running means over the ranks after a step. Each is an exponential average of a batch statistic,
    and the average of the ranks' updates is the update with the mean of their statistics: the running means follow
    the global batch, as on one device, and stay identical on every rank."""
    if world_size() == 1:  # one process: nothing to average, and no walk over the modules every step
        return
    buffers = running_buffers(model)
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1).float() for b in buffers])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for buffer in buffers:
        buffer.copy_(flat[offset : offset + buffer.numel()].view_as(buffer))
        offset += buffer.numel()


def wrap_train_step(model: nn.Module, device: torch.device | str) -> nn.Module:
    """``TrainStep(model)`` in DistributedDataParallel, on ``model``'s device (CUDA: one device per rank)."""
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device)
    device_ids = None
    if device.type == "cuda":
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(
        TrainStep(model),
        device_ids=device_ids,
        broadcast_buffers=False,  # the running means are averaged after each step instead (average_running_buffers)
        # parameters a step leaves out: language before its phase, the frozen geometry, the adapter's
        # self-cross branch outside its phase
        find_unused_parameters=True,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_worker(
    local_rank: int, main_func: Callable, num_processes: int, dist_url: str, config: Any, timeout: timedelta
) -> None:
    from nerfstudio.utils import comms

    dist.init_process_group(
        backend="gloo", init_method=dist_url, world_size=num_processes, rank=local_rank, timeout=timeout
    )
    comms.LOCAL_PROCESS_GROUP = dist.new_group(list(range(num_processes)))
    try:
        main_func(local_rank, num_processes, config, local_rank)
        comms.synchronize()
    finally:
        dist.destroy_process_group()


def launch_on_cpu(
    main_func: Callable, num_processes: int, config: Any, timeout: timedelta = timedelta(minutes=10)
) -> None:
    """Runs ``main_func(local_rank, world_size, config, global_rank)`` (nerfstudio's ``train_loop`` signature) in
    ``num_processes`` CPU processes joined by a ``gloo`` process group, as nerfstudio's ``launch`` does on GPUs."""
    import torch.multiprocessing as mp

    dist_url = f"tcp://127.0.0.1:{_free_port()}"
    mp.spawn(_cpu_worker, nprocs=num_processes, args=(main_func, num_processes, dist_url, config, timeout), join=True)

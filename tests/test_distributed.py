"""Laser under DDP, tested with two CPU processes (gloo) through nerfstudio's trainer and Laser's pipeline.

The two ranks run nerfstudio's ``Trainer`` (``config.setup(local_rank, world_size)``, ``setup``, ``train``), set up by
:func:`laser_ns.distributed.launch_on_cpu` as nerfstudio's launcher sets up GPUs. Every part of the paper is on, so
the adapter, label-volume, self-cross and attention parameters all train through the DDP-wrapped step.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

STEPS = 60
RAYS = 64  # per rank
PATCHES = 1  # per rank


def _config(scene: Path, out: Path, rays: int, patches: int):
    from laser_ns.method_configs import laser_lite_config
    from tests.conftest import every_part_on_hashed_labels

    config = laser_lite_config()
    config.max_num_iterations = STEPS
    config.vis = "tensorboard"
    config.output_dir = out
    config.experiment_name = "ddp"
    config.timestamp = "run"
    config.steps_per_eval_image = config.steps_per_eval_all_images = config.steps_per_eval_batch = 10**9
    config.steps_per_save = STEPS
    config.machine.device_type = "cpu"
    pipeline = config.pipeline
    every_part_on_hashed_labels(pipeline, scene)
    pipeline.datamanager.cache_dir = out / "cache"
    pipeline.datamanager.train_num_rays_per_batch = rays
    pipeline.datamanager.language_patches_per_step = patches
    pipeline.model.schedule.language_start_fraction = 0.2
    return config


def _train_and_record(local_rank: int, world_size: int, config, global_rank: int = 0) -> None:
    """nerfstudio's ``train_loop`` (same seeding, setup and training), recording each step's loss, the final model
    and how many teacher images this rank computed into ``<output_dir>/rank<r>.pt``."""
    seed = config.machine.seed + global_rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    trainer = config.setup(local_rank=local_rank, world_size=world_size)
    trainer.setup()
    initial = {k: v.detach().clone() for k, v in trainer.pipeline.model.state_dict().items()}
    losses: list[float] = []
    iteration = trainer.train_iteration

    model = trainer.pipeline.model
    density = {id(p) for p in model.density_parameters()}
    frozen: dict = {}

    def recorded(step: int):
        if step == model.schedule.phases.language_start:  # density freezes from here on
            frozen.update({n: p.detach().clone() for n, p in model.named_parameters() if id(p) in density})
        loss, loss_dict, metrics = iteration(step)
        losses.append(float(loss.detach()))
        return loss, loss_dict, metrics

    trainer.train_iteration = recorded
    trainer.train()
    record = {
        "losses": losses,
        "initial": initial,
        "density_at_freeze": frozen,
        "state": {k: v.detach().clone() for k, v in trainer.pipeline.model.state_dict().items()},
        "computed": trainer.pipeline.datamanager.teacher_images_computed,
        "ddp": trainer.pipeline.__dict__.get("_train_step") is not None,
    }
    torch.save(record, Path(config.output_dir) / f"rank{global_rank}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two ranks of RAYS rays and PATCHES patches each, and one process with the same global batch."""
    from laser_ns.distributed import launch_on_cpu
    from laser_ns.scenes import make_scene

    root = tmp_path_factory.mktemp("ddp")
    scene = root / "scene"
    make_scene(scene, "tabletop", seed=0, num_views=8, width=64, height=48, annotated_views=[0, 5])
    two = _config(scene, root / "two", RAYS, PATCHES)
    two.save_config()  # (ns-train refuses several CPU processes here; launch_on_cpu is the test's launcher)
    two.machine.num_devices = 2
    launch_on_cpu(_train_and_record, 2, two)
    one = _config(scene, root / "one", 2 * RAYS, 2 * PATCHES)
    _train_and_record(0, 1, one)
    return {
        "ranks": [torch.load(root / "two" / f"rank{r}.pt", weights_only=False) for r in (0, 1)],
        "single": torch.load(root / "one" / "rank0.pt", weights_only=False),
        "two_config": two,
        "scene": scene,
    }


def test_both_ranks_hold_identical_parameters(runs):
    first, second = runs["ranks"]
    assert first["ddp"] and second["ddp"] and not runs["single"]["ddp"]
    assert first["state"].keys() == second["state"].keys()
    differ = [k for k in first["state"] if not torch.equal(first["state"][k], second["state"][k])]
    assert not differ, f"tensors that differ between the ranks: {differ[:5]}"
    # and training moved them (DDP broadcast rank 0's start to both): every part, so every part's gradients were
    # reduced, or the ranks' different batches would have pulled them apart
    initial = first["initial"]
    for part in ("field.", "language_field.", "adapter.", "label_volume.", "transient_attention."):
        names = [k for k in first["state"] if k.startswith(part) and first["state"][k].is_floating_point()]
        assert names and any(not torch.equal(first["state"][k], initial[k]) for k in names), part


def test_frozen_parameters_stay_frozen_under_ddp(runs):
    # Single process: a frozen parameter gets no gradient, so Adam leaves it alone. DDP must not hand it a zero
    # gradient (Adam's momentum would move it).
    for rank in runs["ranks"]:
        frozen = rank["density_at_freeze"]
        assert frozen
        moved = [n for n, value in frozen.items() if not torch.equal(value, rank["state"][n])]
        assert not moved, f"density parameters that moved after the geometry phase: {moved[:5]}"


def test_the_teacher_ran_once_per_image(runs):
    computed = [rank["computed"] for rank in runs["ranks"]]
    assert sum(computed) == 8 and computed == [4, 4]  # image i on rank i % 2, read back by the other rank
    assert runs["single"]["computed"] == 8


def test_one_process_with_the_same_global_batch_gives_the_same_loss_curve(runs):
    # Each rank logs the loss of its half of the global batch; their mean is the global batch's loss, which the single
    # process logs. Different random rays, so the curves agree in trend and level, not step by step: compared as
    # means over windows of 20 steps, within 0.15 of the single run's descent (the total goes below 0: the adapter's
    # losses are negative cosines). Colour-guided targets vary within a tile, so the curves are noisier than with tile
    # targets: over machine seeds 0, 1 and 2 the largest gap was 0.024, 0.031 and 0.088 on descents of 0.84 to 0.90
    # (windows of 10 steps gave gaps up to 0.14, a tenth of the descent, in a different window for each seed: noise).
    window = 20
    assert all(len(rank["losses"]) == STEPS for rank in runs["ranks"])
    global_batch = [statistics.mean(step) for step in zip(*(rank["losses"] for rank in runs["ranks"]), strict=True)]
    one = [statistics.mean(runs["single"]["losses"][i : i + window]) for i in range(0, STEPS, window)]
    two = [statistics.mean(global_batch[i : i + window]) for i in range(0, STEPS, window)]
    tolerance = 0.15 * (max(one) - min(one))
    for i, (a, b) in enumerate(zip(two, one, strict=True)):
        assert abs(a - b) <= tolerance, f"steps {i * window}+: {a:.3f} (2 ranks) vs {b:.3f} (1 process)"


def test_only_rank_0_wrote_a_checkpoint_and_it_loads_in_one_process(runs):
    from nerfstudio.utils.eval_utils import eval_setup

    config = runs["two_config"]
    checkpoints = sorted((config.get_base_dir() / "nerfstudio_models").glob("*.ckpt"))
    assert [c.name for c in checkpoints] == [f"step-{STEPS - 1:09d}.ckpt"]
    _, pipeline, _, step = eval_setup(config.get_base_dir() / "config.yml")
    assert step == STEPS - 1
    saved = runs["ranks"][0]["state"]
    for name, value in pipeline.model.state_dict().items():
        assert torch.equal(value.cpu(), saved[name].cpu()), name

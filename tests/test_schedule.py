"""Learning rates per phase, read from nerfstudio's real Optimizers stepped the way its Trainer steps them."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch
from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers

from laser_ns.method_configs import laser_lite_config
from laser_ns.schedule import Phases, bind_phases
from tests.conftest import tiny_pipeline_config

TOTAL = 300


def lr(optimizers: Optimizers, group: str) -> float:
    return optimizers.optimizers[group].param_groups[0]["lr"]


def setup(pipeline, total: int = TOTAL):
    optimizers = Optimizers(laser_lite_config().optimizers, pipeline.get_param_groups())
    trainer = SimpleNamespace(config=SimpleNamespace(max_num_iterations=total))
    callbacks = pipeline.get_training_callbacks(
        TrainingCallbackAttributes(optimizers=optimizers, grad_scaler=None, pipeline=pipeline, trainer=trainer)
    )
    return optimizers, callbacks


def run_until(pipeline, optimizers, callbacks, stop: int, start: int = 0) -> dict[int, dict[str, float]]:
    """Rates in force during each iteration: before-iteration callbacks, (optimizer step), scheduler step."""
    seen = {}
    for step in range(start, stop):
        for callback in callbacks:
            if TrainingCallbackLocation.BEFORE_TRAIN_ITERATION in callback.where_to_run:
                callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        seen[step] = {group: lr(optimizers, group) for group in optimizers.optimizers}
        optimizers.scheduler_step_all(step)
    return seen


@pytest.fixture(scope="module")
def pipeline(tiny_scene):
    return tiny_pipeline_config(tiny_scene, max_steps=20).setup(device="cpu", test_mode="val")


def test_phases_follow_the_trainer_and_each_group_decays_over_its_own_phase(pipeline):
    optimizers, callbacks = setup(pipeline)
    phases = pipeline.model.schedule.phases
    # from the trainer's 300 steps, not the config's 20; laser-lite spends a quarter of the run on geometry
    assert phases == Phases.of(TOTAL, 0.25, 1 / 3, 8 / 15)
    start, joint, end = phases.language_start, phases.joint_start, phases.total_steps
    rates = run_until(pipeline, optimizers, callbacks, TOTAL)

    # geometry: full rate at step 0, decayed 100x by the end of the geometry phase
    assert rates[0]["fields"] == pytest.approx(1e-2)
    assert rates[start - 1]["fields"] == pytest.approx(1e-2 * 0.01 ** ((start - 1) / start))
    # language: the configured rate exactly when language starts, 0.1x at the end of the run
    assert rates[start]["language_grids"] == pytest.approx(0.02)
    assert rates[start]["language_networks"] == pytest.approx(1e-3)
    assert rates[end - 1]["language_grids"] == pytest.approx(0.02 * 0.1 ** ((end - 1 - start) / (end - start)))
    # colour: the configured 5e-5 exactly at the joint start, then decaying at the language groups' pace
    assert rates[joint]["appearance"] == pytest.approx(5e-5)
    assert rates[end - 1]["appearance"] == pytest.approx(5e-5 * 0.1 ** ((end - 1 - joint) / (end - start)))
    # and the freezing agrees with the phases
    assert not any(p.requires_grad for p in pipeline.model.density_parameters())
    assert all(p.requires_grad for p in pipeline.model.appearance_parameters())


def test_rates_survive_a_checkpoint(pipeline):
    """The schedulers' state goes through torch.save / torch.load(weights_only=True), as nerfstudio resumes."""
    optimizers, callbacks = setup(pipeline)
    stop = pipeline.model.schedule.phases.joint_start + 7
    run_until(pipeline, optimizers, callbacks, stop)  # iterations 0 .. stop-1, as before a save at step stop
    buffer = io.BytesIO()
    torch.save({k: s.state_dict() for k, s in optimizers.schedulers.items()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    resumed = Optimizers(laser_lite_config().optimizers, pipeline.get_param_groups())
    resumed.load_schedulers(state)
    bind_phases(resumed.schedulers, pipeline.model.schedule.phases)  # what get_training_callbacks does after the load
    after_load = {group: lr(resumed, group) for group in resumed.optimizers}
    continued = run_until(pipeline, optimizers, callbacks, stop + 1, start=stop)[stop]
    assert after_load == pytest.approx(continued)
    assert after_load["appearance"] < 5e-5 and after_load["language_grids"] < 0.02


def test_a_geometry_checkpoint_skips_the_geometry_phase():
    phases = Phases.of(100, 0.5, 1 / 3, 8 / 15, skip_geometry=True)
    assert phases.language_start == 0 and phases.joint_start == 33 and phases.self_cross_start == 53

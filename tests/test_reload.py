"""A saved run reloads as it trained: nerfstudio's own loading (eval_setup, as laser-eval, ns-render, ns-eval, the
viewer and --load-dir use it) gives back every tensor of the model, and the same segmentation.

nerfstudio's ``Pipeline.load_state_dict`` loads the model's keys into the model, then loads the rest of the checkpoint
into the whole pipeline with the ``_model.`` keys taken out: every load pre-hook of the model runs a second time on a
dict without its module's keys, and must leave the module alone then.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.pipelines.base_pipeline import Pipeline
from torch import nn

from laser_ns.components.centring import FeatureCentring
from laser_ns.fields.language_field import _default_log_scale

STEPS = 300


# ---------------------------------------------------------------------------------------- nerfstudio's load sequence
class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.field = nn.Linear(3, 4)
        self.centring = FeatureCentring(4)
        self.label_volume = _LabelVolume()


class _LabelVolume(nn.Module):
    """The label volume's learned scale and its hook, on a tiny layer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 4)
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.register_load_state_dict_pre_hook(_default_log_scale)


class _Pipeline(Pipeline):
    """Only what ``Pipeline.load_state_dict`` reads: ``_model`` and another submodule with state of its own."""

    def __init__(self) -> None:
        super().__init__()
        self._model = _Model()
        self.datamanager = nn.Linear(2, 2)


def _fitted_pipeline() -> _Pipeline:
    pipeline = _Pipeline()
    pipeline.model.centring.fit([torch.randn(3, 3, 4, generator=torch.Generator().manual_seed(0))])
    with torch.no_grad():
        pipeline.model.label_volume.log_scale.fill_(2.0)
    return pipeline


def test_pipeline_load_keeps_the_fitted_centring_and_scale():
    saved = _fitted_pipeline()
    assert saved.model.centring.spread != 1  # fitted: not the identity
    loaded = _Pipeline()
    loaded.load_state_dict(copy.deepcopy(saved.state_dict()))  # what load_pipeline calls (eval_setup, --load-dir)
    for name, value in saved.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_a_model_checkpoint_from_before_centring_and_the_scale_loads_as_the_identity():
    old = {k: v for k, v in _fitted_pipeline().state_dict().items() if "centring" not in k and "log_scale" not in k}
    loaded = _fitted_pipeline()
    loaded.load_state_dict(old)  # strict for the model: the hooks must supply the missing keys
    torch.testing.assert_close(loaded.model.centring.mean, torch.zeros(4))
    torch.testing.assert_close(loaded.model.centring.spread, torch.ones(()))
    torch.testing.assert_close(loaded.model.label_volume.log_scale.data, torch.zeros(()))


def test_the_pipeline_level_half_of_the_load_leaves_the_model_alone():
    """The second half of Pipeline.load_state_dict on its own: the pipeline's other keys, none of the model's."""
    pipeline = _fitted_pipeline()
    before = {k: v.clone() for k, v in pipeline.state_dict().items()}
    nn.Module.load_state_dict(pipeline, {"datamanager.weight": torch.ones(2, 2)}, strict=False)
    torch.testing.assert_close(pipeline.model.centring.mean, before["_model.centring.mean"])
    torch.testing.assert_close(pipeline.model.centring.spread, before["_model.centring.spread"])
    torch.testing.assert_close(pipeline.model.label_volume.log_scale, before["_model.label_volume.log_scale"])


# ---------------------------------------------------------------------------------------- a real run, end to end
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """laser-lite on an 8-view 64x48 scene, simulated dense CLIP teacher, centring on; a checkpoint at the end."""
    from laser_ns.method_configs import laser_lite_config
    from laser_ns.scenes import make_scene

    root = tmp_path_factory.mktemp("reload")
    info = make_scene(root / "scene", "tabletop", seed=0, num_views=8, width=64, height=48, annotated_views=[0, 5])
    torch.manual_seed(0)
    np.random.seed(0)
    config = laser_lite_config()
    config.max_num_iterations = STEPS
    config.vis = "tensorboard"
    config.output_dir = root / "runs"
    config.experiment_name = "reload"
    config.timestamp = "run"
    config.steps_per_eval_image = config.steps_per_eval_all_images = config.steps_per_eval_batch = 10**9
    config.steps_per_save = STEPS
    pipeline = config.pipeline
    pipeline.teacher_type = "clip-like"
    pipeline.datamanager.data = info.out_dir
    pipeline.datamanager.cache_dir = root / "cache"
    pipeline.datamanager.train_num_rays_per_batch = 128
    pipeline.datamanager.language_patch_size = 32
    pipeline.model.centre_teacher_features = True
    pipeline.model.score_space = "clip"  # text scored against mean + spread * normalise(F): the centring shows in it
    pipeline.model.schedule.language_start_fraction = 0.1
    # nerfacto's proposal-weight annealing lives in a callback, not in the checkpoint (a reloaded model renders with
    # its end value, 1): finished within the run here, as in any run of 1000 steps or more.
    pipeline.model.proposal_weights_anneal_max_num_iters = STEPS // 2
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return trainer, config.get_base_dir() / "config.yml", info


@pytest.fixture(scope="module")
def reloaded(trained_run):
    from nerfstudio.utils.eval_utils import eval_setup

    from laser_ns.compat import allow_numpy_scalars_in_checkpoints

    trainer, config_path, _ = trained_run
    allow_numpy_scalars_in_checkpoints()  # as laser-eval: nerfstudio's torch.load under torch >= 2.6
    _, pipeline, _, step = eval_setup(config_path)
    assert step == trainer.step == STEPS - 1  # the checkpoint of the last step
    return pipeline


@pytest.mark.slow
def test_every_tensor_of_the_model_reloads(trained_run, reloaded):
    trainer, _, _ = trained_run
    trained, loaded = trainer.pipeline.model, reloaded.model
    centring = trained.centring
    assert centring is not None
    assert centring.mean.abs().max() > 0.1 and not torch.isclose(centring.spread, torch.ones(()))  # fitted
    for kind in ("named_parameters", "named_buffers"):
        mine, theirs = dict(getattr(trained, kind)()), dict(getattr(loaded, kind)())
        assert mine.keys() == theirs.keys()
        for name, value in mine.items():
            torch.testing.assert_close(theirs[name].cpu(), value.cpu(), rtol=0, atol=0, msg=f"{kind}: {name}")


@torch.no_grad()
def _segment(model, cameras, views: list[int]) -> dict[int, torch.Tensor]:
    model.eval()
    outputs = {i: model.get_outputs_for_camera(cameras[i : i + 1].to(model.device)) for i in views}
    return {i: out["segmentation_class"][..., 0].long().cpu() for i, out in outputs.items()}


def _miou(predictions: dict[int, torch.Tensor], info) -> float:
    from laser_ns.eval.consistency import label_map_to_masks
    from laser_ns.eval.metrics import aggregate, segmentation_metrics_3dovs

    views = [
        segmentation_metrics_3dovs(
            predictions[i], label_map_to_masks(torch.from_numpy(info.labels[i].astype(np.int64)), len(info.class_names))
        )
        for i in info.annotated_views
    ]
    return float(aggregate(views)["miou"])


@pytest.mark.slow
def test_the_reloaded_run_segments_as_the_trained_one(trained_run, reloaded):
    trainer, _, info = trained_run
    dataset = trainer.pipeline.datamanager.train_dataset
    by_stem = {Path(p).stem: i for i, p in enumerate(dataset.image_filenames)}
    views = [by_stem[info.image_paths[i].stem] for i in info.annotated_views]
    # one set of cameras for both: the comparison is of the models alone
    trained = _segment(trainer.pipeline.model, dataset.cameras, views)
    loaded = _segment(reloaded.model, dataset.cameras, views)
    by_view = dict(zip(info.annotated_views, views, strict=True))
    trained_miou = _miou({v: trained[j] for v, j in by_view.items()}, info)
    loaded_miou = _miou({v: loaded[j] for v, j in by_view.items()}, info)
    differ = {i: f"{(trained[i] != loaded[i]).float().mean():.1%}" for i in views}
    assert abs(trained_miou - loaded_miou) < 0.001, f"mIoU {trained_miou:.3f} trained, {loaded_miou:.3f} reloaded"
    assert all(torch.equal(trained[i], loaded[i]) for i in views), f"pixels that differ, by view: {differ}"

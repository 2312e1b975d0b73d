"""Starting from a finished nerfacto-style run: geometry loads, the geometry phase is skipped, mismatches fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from laser_ns.geometry_checkpoint import GeometryCheckpointError
from tests.conftest import tiny_pipeline_config


def fake_run(pipeline, run_dir: Path) -> Path:
    """A run folder as ns-train writes it: nerfstudio_models/step-*.ckpt and dataparser_transforms.json."""
    (run_dir / "nerfstudio_models").mkdir(parents=True)
    state = {f"_model.{k}": v for k, v in pipeline.model.state_dict().items()}
    torch.save({"step": 10, "pipeline": state}, run_dir / "nerfstudio_models" / "step-000000010.ckpt")
    pipeline.datamanager.train_dataparser_outputs.save_dataparser_transform(run_dir / "dataparser_transforms.json")
    (run_dir / "config.yml").write_text("# placeholder\n")
    return run_dir


@pytest.fixture(scope="module")
def source(tiny_scene, tmp_path_factory):
    torch.manual_seed(1)
    pipeline = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="val")
    with torch.no_grad():
        for p in pipeline.model.field.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # make it distinguishable from a fresh init
    return pipeline, fake_run(pipeline, tmp_path_factory.mktemp("nerfacto_run") / "run")


def test_geometry_loads_and_phase_is_skipped(tiny_scene, source):
    pipeline, run_dir = source
    config = tiny_pipeline_config(tiny_scene, geometry_checkpoint=run_dir / "config.yml")
    seeded = config.setup(device="cpu", test_mode="val")
    loaded = seeded.model.field.state_dict()
    for name, value in pipeline.model.field.state_dict().items():
        assert torch.equal(value, loaded[name]), name
    assert seeded.model.schedule.phases.language_start == 0
    assert seeded.model.schedule.language_active(0)


def test_other_scene_is_rejected(tiny_scene, source, tmp_path):
    pipeline, run_dir = source
    meta = json.loads((run_dir / "dataparser_transforms.json").read_text())
    meta["scale"] *= 2
    other = fake_run(pipeline, tmp_path / "other")
    (other / "dataparser_transforms.json").write_text(json.dumps(meta))
    with pytest.raises(GeometryCheckpointError, match="normalised its scene differently"):
        tiny_pipeline_config(tiny_scene, geometry_checkpoint=other).setup(device="cpu", test_mode="val")


def test_other_field_size_is_rejected(tiny_scene, tmp_path):
    bigger = tiny_pipeline_config(tiny_scene, hidden_dim=48).setup(device="cpu", test_mode="val")
    run_dir = fake_run(bigger, tmp_path / "bigger")
    with pytest.raises(GeometryCheckpointError, match="has shape"):
        tiny_pipeline_config(tiny_scene, geometry_checkpoint=run_dir).setup(device="cpu", test_mode="val")


def test_missing_checkpoint_is_named(tiny_scene, tmp_path):
    with pytest.raises(GeometryCheckpointError, match="does not exist"):
        tiny_pipeline_config(tiny_scene, geometry_checkpoint=tmp_path / "nope").setup(device="cpu", test_mode="val")

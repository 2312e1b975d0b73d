"""Dataparser frame <-> original capture frame, against nerfstudio's own inverse."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from laser_ns.export.frames import SceneFrames


def _frames() -> SceneFrames:
    angle = 0.7
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    return SceneFrames(np.concatenate([rotation, [[0.3], [-1.2], [2.0]]], axis=1), 0.25, "test")


def test_round_trip_and_agreement_with_nerfstudio():
    from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs

    frames = _frames()
    points = np.random.default_rng(0).normal(size=(50, 3))
    assert np.allclose(frames.to_dataparser(frames.to_original(points)), points)
    outputs = DataparserOutputs(
        image_filenames=[],
        cameras=None,  # type: ignore[arg-type]
        dataparser_transform=torch.from_numpy(frames.transform).float(),
        dataparser_scale=frames.scale,
    )
    poses = torch.eye(4)[None, :3].repeat(len(points), 1, 1)
    poses[:, :3, 3] = torch.from_numpy(points).float()
    expected = outputs.transform_poses_to_original_space(poses)[:, :3, 3].numpy()
    assert np.allclose(frames.to_original(points), expected, atol=1e-4)


def test_normals_rotate_without_scaling():
    frames = _frames()
    normals = frames.directions_to_original(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)


def test_reads_the_run_file_and_names_a_broken_one(tmp_path):
    good = tmp_path / "dataparser_transforms.json"
    good.write_text(json.dumps({"transform": _frames().transform.tolist(), "scale": 0.25}))
    assert SceneFrames.from_json(good).scale == 0.25
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps({"transform": [[1, 0, 0]], "scale": 1.0}))
    with pytest.raises(ValueError, match="broken.json"):
        SceneFrames.from_json(bad)
    with pytest.raises(ValueError, match="missing.json"):
        SceneFrames.from_json(tmp_path / "missing.json")

"""LaserDataManager's language rays: which tile each ray belongs to and where inside it the ray passes."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_pipeline_config


@pytest.mark.parametrize("jitter", [True, False])
def test_language_rays_pass_through_their_own_tile(tiny_scene, jitter):
    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.language_ray_jitter = jitter
    datamanager = config.setup(device="cpu", test_mode="val").datamanager
    torch.manual_seed(0)
    cameras, coords, features = datamanager._sample_patches()
    assert len(cameras) == len(coords) == len(features) > 0
    dataset = datamanager.train_dataset
    for camera, (y, x), feature in zip(cameras[:, 0].tolist(), coords.tolist(), features, strict=True):
        tiles = datamanager.tile_features[camera]  # [h, w, D]
        tile_h = float(dataset.cameras.height[camera]) / tiles.shape[0]
        tile_w = float(dataset.cameras.width[camera]) / tiles.shape[1]
        row, col = int(y // tile_h), int(x // tile_w)
        # the ray's pixel lies in the tile whose feature is its target
        torch.testing.assert_close(feature, tiles[row, col].float())
        if not jitter:
            assert y == pytest.approx((row + 0.5) * tile_h) and x == pytest.approx((col + 0.5) * tile_w)
    if jitter:
        # offsets inside the tiles spread over the tile instead of sitting at its centre
        tile_h = float(dataset.cameras.height[0]) / datamanager.tile_features[0].shape[0]
        more = torch.cat([datamanager._sample_patches()[1] for _ in range(10)])
        offsets = (more[:, 0] % tile_h) / tile_h
        assert offsets.min() < 0.25 and offsets.max() > 0.75

"""FeatureCentring: the centred distillation target, its way back to CLIP's space, and old checkpoints."""

import pytest
import torch
import torch.nn.functional as F

from laser_ns.components.centring import FeatureCentring


def _clip_like_tiles(generator: torch.Generator) -> list[torch.Tensor]:
    """Two 4x5 'images' of unit features sharing one strong direction, plus one all-zero (invalid) tile."""
    common = F.normalize(torch.randn(16, generator=generator), dim=0)
    images = []
    for _ in range(2):
        tiles = F.normalize(6 * common + torch.randn(4, 5, 16, generator=generator), dim=-1)
        tiles[0, 0] = 0
        images.append(tiles)
    return images


def test_fit_takes_the_mean_and_spread_of_valid_tiles_only():
    images = _clip_like_tiles(torch.Generator().manual_seed(0))
    centring = FeatureCentring(16)
    centring.fit(images)
    valid = torch.cat([im.reshape(-1, 16)[1:] for im in images])  # the zero tile of each image left out
    torch.testing.assert_close(centring.mean, valid.mean(dim=0))
    torch.testing.assert_close(centring.spread, (valid - valid.mean(dim=0)).norm(dim=-1).mean())


def test_centring_spreads_the_tiles_apart_and_restore_returns_to_clip_space():
    images = _clip_like_tiles(torch.Generator().manual_seed(1))
    centring = FeatureCentring(16)
    centring.fit(images)
    tiles = images[0].reshape(-1, 16)[1:]
    raw_cos = (tiles @ tiles.T).mean()
    centred = centring.centre(tiles)
    assert (centred @ centred.T).mean() < raw_cos - 0.4  # the shared direction is gone
    restored = centring.restore(centred)
    # restore(centre(G)) is G up to the spread of its own norm: the same direction to within a few degrees
    assert F.cosine_similarity(restored, tiles, dim=-1).min() > 0.97
    # and text is scored as on G: the closest of random "text" vectors agrees for most tiles
    text = F.normalize(torch.randn(6, 16, generator=torch.Generator().manual_seed(2)), dim=-1)
    agree = ((restored @ text.T).argmax(-1) == (tiles @ text.T).argmax(-1)).float().mean()
    assert agree > 0.8


def test_unfitted_centring_only_normalises_and_old_checkpoints_load_as_that():
    centring = FeatureCentring(8)
    x = torch.randn(5, 8)
    torch.testing.assert_close(centring.centre(x), F.normalize(x, dim=-1))
    torch.testing.assert_close(centring.restore(x), F.normalize(x, dim=-1))
    fitted = FeatureCentring(8)
    fitted.fit([torch.randn(3, 3, 8)])
    fitted.load_state_dict({})  # a checkpoint saved before centring existed
    torch.testing.assert_close(fitted.mean, torch.zeros(8))
    torch.testing.assert_close(fitted.spread, torch.ones(()))


def test_fit_without_valid_tiles_names_the_option():
    with pytest.raises(ValueError, match="centre-teacher-features"):
        FeatureCentring(4).fit([torch.zeros(2, 2, 4)])

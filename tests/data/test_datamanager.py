"""LaserDataManager's language rays: which tile each ray belongs to and where inside it the ray passes."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_pipeline_config


@pytest.mark.parametrize("jitter", [True, False])
def test_language_rays_pass_through_their_own_tile(tiny_scene, jitter):
    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.language_ray_jitter = jitter
    config.datamanager.language_targets = "tile"  # each ray's own tile; colour-guided targets are tested below
    datamanager = config.setup(device="cpu", test_mode="val").datamanager
    torch.manual_seed(0)
    cameras, coords, features, _ = datamanager._sample_patches()
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


@pytest.fixture(scope="module")
def scene_128x96(tmp_path_factory):
    from laser_ns.scenes import make_scene

    root = tmp_path_factory.mktemp("scene_128x96") / "scene"
    make_scene(root, "tabletop", seed=1, num_views=3, width=128, height=96, annotated_views=[0])
    return root


@pytest.mark.parametrize(
    ("camera_scale", "teacher_scale", "min_agreement"),
    # teacher finer than RGB, and coarser (its label maps are then resampled to 64x48, moving edges by a pixel)
    [(0.5, 1.0, 0.97), (1.0, 0.5, 0.9)],
)
def test_tile_rays_land_on_their_tile_when_teacher_and_training_resolutions_differ(
    scene_128x96, tmp_path, camera_scale, teacher_scale, min_agreement
):
    from laser_ns.data.datamanager import LaserDataset

    config = tiny_pipeline_config(scene_128x96)
    config.datamanager.camera_res_scale_factor = camera_scale
    config.datamanager.teacher_image_scale = teacher_scale
    config.datamanager.language_patch_size = 128  # the whole grid: every tile gets a ray
    config.datamanager.language_targets = "tile"  # a pure target is then a pure tile
    config.datamanager.cache_dir = tmp_path / "cache"
    pipeline = config.setup(device="cpu", test_mode="val")
    datamanager = pipeline.datamanager
    dataset = datamanager.train_dataset
    assert int(dataset.cameras.width[0]) == 128 * camera_scale
    expected_grid = (round(96 * teacher_scale / 16), round(128 * teacher_scale / 16))
    assert tuple(datamanager.tile_features[0].shape[:2]) == expected_grid

    # A ray whose target is (almost exactly) one class's embedding comes from a tile (almost) all of that class: the
    # capture's label map (full size, independent of both resolutions) must show that class where the ray crosses
    # the image. A control shifted by one tile, at the same rays, must agree much less.
    capture = LaserDataset(datamanager.train_dataparser_outputs, scale_factor=1.0)
    classes = pipeline.teacher.class_embeddings()
    tile_px = 16 / teacher_scale  # one tile, in capture pixels
    torch.manual_seed(0)
    checked, agree, agree_shifted = 0, 0, 0
    for _ in range(20):
        cameras, coords, features, _ = datamanager._sample_patches()
        best, label = (features @ classes.T).max(dim=-1)  # [N]
        for camera, (y, x), pure, k in zip(
            cameras[:, 0].tolist(), coords.tolist(), (best > 0.999).tolist(), label.tolist(), strict=True
        ):
            if not pure:
                continue
            labels = capture.label_map(camera)  # [96, 128]
            row = int(y * labels.shape[0] / float(dataset.cameras.height[camera]))
            col = int(x * labels.shape[1] / float(dataset.cameras.width[camera]))
            checked += 1
            agree += int(labels[row, col]) == k
            agree_shifted += int(labels[(row + int(tile_px)) % labels.shape[0], col]) == k
    assert checked >= 40
    assert agree / checked >= min_agreement, f"{agree}/{checked} rays see their tile's class"
    assert agree_shifted / checked < agree / checked - 0.1, f"control: {agree_shifted}/{checked} vs {agree}/{checked}"


def test_teacher_scale_changes_the_cache_key_and_grid(tiny_scene, tmp_path):
    grids, files = [], []
    for scale in (1.0, 0.5):
        config = tiny_pipeline_config(tiny_scene)
        config.datamanager.teacher_image_scale = scale
        config.datamanager.cache_dir = tmp_path
        datamanager = config.setup(device="cpu", test_mode="val").datamanager
        grids.append(tuple(datamanager.tile_features[0].shape[:2]))
        files.append({p.name for p in tmp_path.rglob("*.pt")})
    assert grids == [(3, 4), (2, 2)]  # 48x64 -> 3x4 tiles; 24x32 -> 2x2 (1.5 rounds up)
    assert len(files[0]) == 8 and len(files[1]) == 16  # the second scale wrote its own 8 entries


def test_lite_teacher_sees_the_training_images_unchanged(tiny_scene, tmp_path):
    from laser_ns.data.datamanager import LaserDataManagerConfig
    from laser_ns.method_configs import laser_config, laser_lite_config

    assert LaserDataManagerConfig().teacher_image_scale == 0.2
    assert laser_config().pipeline.datamanager.teacher_image_scale == 0.2
    assert laser_lite_config().pipeline.datamanager.teacher_image_scale == 1.0
    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.cache_dir = tmp_path
    pipeline = config.setup(device="cpu", test_mode="val")
    dataset = pipeline.datamanager.train_dataset
    expected = pipeline.teacher.dense_features(dataset.get_image_float32(3)[..., :3], dataset.label_map(3))
    torch.testing.assert_close(pipeline.datamanager.tile_features[3].float(), expected, atol=1e-3, rtol=0)


def test_grid_smaller_than_a_patch_warns_once_with_the_fix(tiny_scene, tmp_path, capsys):
    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.teacher_image_scale = 0.25  # 64x48 capture -> 16x12 -> 1x1 tiles
    config.datamanager.language_patch_size = 32  # 2x2 tiles
    config.datamanager.cache_dir = tmp_path
    config.setup(device="cpu", test_mode="val")
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("smaller than one 32-pixel language patch") == 1
    assert "the teacher sees 16x12 images (teacher_image_scale 0.25 x the 64x48 capture" in out
    assert "a 1x1-tile grid" in out and "as for 8 of the 8 images" in out
    assert "--pipeline.datamanager.teacher-image-scale (to 0.5 or more)" in out
    assert "--pipeline.datamanager.language-patch-size (to 16 or less)" in out


def test_no_warning_when_the_grid_holds_a_patch(tiny_scene, tmp_path, capsys):
    config = tiny_pipeline_config(tiny_scene)  # 3x4 tiles, 2x2-tile patches
    config.datamanager.cache_dir = tmp_path
    config.setup(device="cpu", test_mode="val")
    assert "language patch" not in capsys.readouterr().out


def test_bad_teacher_scale_is_named(tiny_scene, tmp_path):
    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.teacher_image_scale = 0.0
    config.datamanager.cache_dir = tmp_path
    with pytest.raises(ValueError, match="teacher-image-scale"):
        config.setup(device="cpu", test_mode="val")


@pytest.mark.parametrize("with_labels", [True, False])
def test_missing_clip_weights_offer_the_label_teacher_when_the_scene_has_labels(tmp_path, monkeypatch, with_labels):
    from laser_ns.scenes import make_scene
    from laser_ns.teachers.dense_clip import ClipWeightsUnavailable, DenseClip

    scene = tmp_path / "scene"
    make_scene(scene, "tabletop", num_views=3, width=32, height=32, annotated_views=[0], write_labels=with_labels)

    def unavailable(self):
        raise ClipWeightsUnavailable("The CLIP weights ViT-B-16/openai could not be obtained.")

    monkeypatch.setattr(DenseClip, "_build", unavailable)
    config = tiny_pipeline_config(scene)
    config.teacher_type = "clip"
    config.datamanager.cache_dir = tmp_path / "cache"
    with pytest.raises(ClipWeightsUnavailable) as info:
        config.setup(device="cpu", test_mode="val")
    message = str(info.value)
    assert message.startswith("The CLIP weights ViT-B-16/openai could not be obtained.")
    hint = f"This scene has label maps ({scene / 'labels'}/): it can train right now, offline,"
    assert (hint in message and "--pipeline.teacher-type clip-like" in message) == with_labels
    assert ("--pipeline.teacher-type labels" in message) == with_labels


def _blob_features(dim: int = 16) -> list[torch.Tensor]:
    """Two 10x10 'images' of tile features: a big class everywhere but a 2x2 small object at the top left, with a
    few invalid (zero) tiles."""
    torch.manual_seed(0)
    big, small = torch.nn.functional.normalize(torch.randn(2, dim), dim=-1)
    images = []
    for _ in range(2):
        tiles = big.repeat(10, 10, 1) + 0.01 * torch.randn(10, 10, dim)
        tiles[:2, :2] = small + 0.01 * torch.randn(2, 2, dim)
        tiles[9, 9] = 0.0  # no teacher signal
        images.append(tiles)
    return images


def test_tile_clusters_separate_a_small_object_without_labels():
    from laser_ns.data.datamanager import cluster_tiles

    torch.manual_seed(0)
    clusters = cluster_tiles(_blob_features(), num_clusters=2)
    sizes = sorted(len(c) for c in clusters)
    assert sizes == [8, 2 * 99 - 8]  # the small object's 4 tiles per image, every valid tile once
    small = min(clusters, key=len)
    assert set(map(tuple, small[:, 1:].tolist())) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    with pytest.raises(ValueError, match="language-patch-clusters"):
        cluster_tiles(_blob_features(), num_clusters=0)


@pytest.mark.parametrize("sampling", ["uniform", "balanced"])
def test_balanced_patches_see_small_objects_more_often(tiny_scene, sampling):
    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.language_patch_sampling = sampling
    config.datamanager.language_patch_clusters = 2
    config.datamanager.language_targets = "tile"  # the hand-made tiles below replace the scene's (and its guides)
    datamanager = config.setup(device="cpu", test_mode="val").datamanager
    datamanager.config.language_patch_size = 2 * datamanager.teacher.tile_size  # 2x2 tiles
    datamanager.tile_features = _blob_features(dim=datamanager.tile_features[0].shape[-1])
    if sampling == "balanced":
        from laser_ns.data.datamanager import cluster_tiles

        datamanager.tile_clusters = cluster_tiles(datamanager.tile_features, 2)
    torch.manual_seed(0)
    small = datamanager.tile_features[0][0, 0]
    hits = total = 0
    for _ in range(50):
        _, _, features, shape = datamanager._sample_patches()
        assert shape[1:] == (2, 2)
        hits += int((torch.nn.functional.cosine_similarity(features, small[None], dim=-1) > 0.9).sum())
        total += len(features)
    share = hits / total
    # 4 of 99 valid tiles per image are the small object's: about 4% uniformly, far more when clusters are balanced
    assert share < 0.1 if sampling == "uniform" else share > 0.3


def test_unknown_patch_sampling_is_refused(tiny_scene):
    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.language_patch_sampling = "rare"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="language-patch-sampling"):
        config.setup(device="cpu", test_mode="val")


@pytest.mark.parametrize("tile_size", [4, 8])
def test_laser_lite_patches_are_eight_tiles_whatever_the_teachers_tile(scene_128x96, tmp_path, tile_size):
    # issue 18: laser-lite's 128-pixel patch was larger than a 160x120 image with the CLIP-like teacher's 4-px tiles
    config = tiny_pipeline_config(scene_128x96)
    config.datamanager.language_patch_tiles = 8  # laser-lite's setting
    config.datamanager.language_patch_size = 128
    config.datamanager.cache_dir = tmp_path / "cache"
    config.teacher_type = "clip-like"
    config.clip_like_teacher.tile_size = tile_size
    datamanager = config.setup(device="cpu", test_mode="val").datamanager
    torch.manual_seed(0)
    _, _, _, (patches, rows, cols) = datamanager._sample_patches()
    assert (rows, cols) == (8, 8) and patches == config.datamanager.language_patches_per_step


def _two_colour_tiles():
    """A 3x3-tile image, 4 cells per tile: left 1.5 tiles red with feature e0, the rest blue with feature e1; the
    middle column straddles the edge, so its teacher feature is a half-and-half mix."""
    from laser_ns.data.datamanager import GUIDE_CELLS

    k = GUIDE_CELLS
    guide = torch.zeros(3 * k, 3 * k, 3)
    guide[:, : 3 * k // 2, 0] = 1.0  # red
    guide[:, 3 * k // 2 :, 2] = 1.0  # blue
    red, blue = torch.eye(8)[0], torch.eye(8)[1]
    tiles = torch.stack([red, torch.nn.functional.normalize(red + blue, dim=0), blue])[None].repeat(3, 1, 1)
    return tiles, guide, red, blue


def test_colour_guided_targets_take_the_feature_of_the_side_the_ray_is_on():
    from laser_ns.data.datamanager import colour_guided_targets

    tiles, guide, red, blue = _two_colour_tiles()
    rows, cols = torch.tensor([1, 1]), torch.tensor([1, 1])  # the mixed middle tile
    offsets = torch.tensor([[0.5, 0.2], [0.5, 0.8]])  # left (red) and right (blue) half of it
    targets = colour_guided_targets(tiles, guide, rows, cols, offsets, space_sigma=1.0, colour_sigma=0.1)
    cos = torch.nn.functional.cosine_similarity
    # the mixed tile's own feature is equally close to both; the guided targets pick the ray's side
    assert cos(targets[0], red, dim=0) > 0.95 > cos(tiles[1, 1], red, dim=0)
    assert cos(targets[1], blue, dim=0) > 0.95
    # a wide colour sigma leaves only the spatial weights: the target is the same smooth mix on both sides
    smooth = colour_guided_targets(tiles, guide, rows, cols, offsets, space_sigma=1.0, colour_sigma=1e3)
    assert cos(smooth[0], red, dim=0) < 0.9 and cos(smooth[1], blue, dim=0) < 0.9


def test_colour_guided_targets_reduce_to_the_tile_with_a_narrow_spatial_width():
    from laser_ns.data.datamanager import colour_guided_targets

    torch.manual_seed(0)
    tiles = torch.nn.functional.normalize(torch.randn(4, 5, 16), dim=-1)
    guide = torch.rand(16, 20, 3)
    rows, cols = torch.randint(4, (50,)), torch.randint(5, (50,))
    offsets = 0.25 + 0.5 * torch.rand(50, 2)  # well inside the tile
    targets = colour_guided_targets(tiles, guide, rows, cols, offsets, space_sigma=0.05, colour_sigma=1e3)
    torch.testing.assert_close(targets, tiles[rows, cols])


def test_colour_guided_targets_ignore_tiles_without_signal_and_outside_the_image():
    from laser_ns.data.datamanager import colour_guided_targets

    tiles, guide, red, _ = _two_colour_tiles()
    tiles[0, 0] = 0.0  # no signal (e.g. unlabelled)
    rows, cols = torch.tensor([0, 0, 1]), torch.tensor([1, 0, 0])
    offsets = torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.5, 0.0]])
    # every colour unlike every tile's: the weights must not underflow to 0/0
    far = torch.full_like(guide, 50.0)
    for g in (guide, far):
        targets = colour_guided_targets(tiles, g, rows, cols, offsets, space_sigma=1.0, colour_sigma=0.01)
        assert torch.isfinite(targets).all()
        assert targets[1].abs().max() == 0  # its own tile has no signal: still none
        assert targets[0].norm() > 0.5 and targets[2].norm() > 0.5
    # the corner tile without signal gives nothing to its neighbour's target: red and mixed tiles only
    targets = colour_guided_targets(tiles, guide, rows, cols, offsets, space_sigma=1.0, colour_sigma=0.1)
    assert torch.nn.functional.cosine_similarity(targets[2], red, dim=0) > 0.95


def test_datamanager_colour_guided_targets_on_a_scene(tiny_scene):
    from laser_ns.data.datamanager import GUIDE_CELLS

    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.language_targets = "colour-guided"
    datamanager = config.setup(device="cpu", test_mode="val").datamanager
    tiles = datamanager.tile_features
    assert len(datamanager.tile_guides) == len(tiles)
    h, w = tiles[0].shape[:2]
    assert datamanager.tile_guides[0].shape == (h * GUIDE_CELLS, w * GUIDE_CELLS, 3)
    torch.manual_seed(0)
    cameras, coords, features, _ = datamanager._sample_patches()
    own = []
    dataset = datamanager.train_dataset
    for camera, (y, x) in zip(cameras[:, 0].tolist(), coords.tolist(), strict=True):
        tile_h = float(dataset.cameras.height[camera]) / tiles[camera].shape[0]
        tile_w = float(dataset.cameras.width[camera]) / tiles[camera].shape[1]
        own.append(tiles[camera][int(y // tile_h), int(x // tile_w)].float())
    own = torch.stack(own)
    cos = torch.nn.functional.cosine_similarity(features, own, dim=-1)
    # the target is a mix of the tile and its neighbours: near the tile's own feature, yet not always equal to it
    assert cos.min() > 0.8 and (cos < 0.99).any()


def test_colour_guides_come_from_the_teacher_pass_with_no_extra_decode(tiny_scene, monkeypatch):
    from laser_ns.data.datamanager import LaserDataset, guide_colours, teacher_view

    original = LaserDataset.get_image_float32

    def setup(targets):
        decoded = []

        def counting(self, image_idx):
            decoded.append(image_idx)
            return original(self, image_idx)

        monkeypatch.setattr(LaserDataset, "get_image_float32", counting)
        config = tiny_pipeline_config(tiny_scene)
        config.datamanager.language_targets = targets
        datamanager = config.setup(device="cpu", test_mode="val").datamanager
        monkeypatch.setattr(LaserDataset, "get_image_float32", original)
        return config, datamanager, sorted(decoded)

    _, _, tile_decodes = setup("tile")
    config, datamanager, guided_decodes = setup("colour-guided")
    assert guided_decodes == tile_decodes  # the guides reuse the teacher pass's decode of each image
    images = teacher_view(datamanager.train_dataparser_outputs, config.datamanager.teacher_image_scale)
    assert len(datamanager.tile_guides) == len(datamanager.tile_features) == len(images)
    for i, tiles in enumerate(datamanager.tile_features):
        expected = guide_colours(images.get_image_float32(i)[..., :3], *tiles.shape[:2])
        assert torch.equal(datamanager.tile_guides[i], expected)


@pytest.mark.parametrize(
    ("option", "value"), [("language_guide_space_sigma", 0.0), ("language_guide_colour_sigma", -1.0)]
)
def test_bad_guide_sigma_is_named_before_the_teacher_runs(tiny_scene, option, value, monkeypatch):
    from laser_ns.teachers.cache import FeatureCache

    def fail(*args, **kwargs):
        raise AssertionError("the teacher ran before the bad width was refused")

    monkeypatch.setattr(FeatureCache, "features_for_image", fail)
    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.language_targets = "colour-guided"
    setattr(config.datamanager, option, value)
    with pytest.raises(ValueError, match=option.replace("_", "-")):
        config.setup(device="cpu", test_mode="val")


def test_unknown_language_targets_are_refused(tiny_scene):
    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.language_targets = "bilinear"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="language-targets"):
        config.setup(device="cpu", test_mode="val")

"""Tests of the procedural scene generator: determinism, exact labels, file layout and pose conventions."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from laser_ns.scenes import (
    MARKER_FILE,
    PRESETS,
    UNLABELLED,
    Box,
    Cylinder,
    Material,
    OrbitRig,
    Plane,
    Sphere,
    camera_poses,
    cast_rays,
    intrinsics_from_fov,
    llff_to_opengl,
    make_scene,
    render_view,
)

W, H = 64, 48
NUM_VIEWS = 6


@pytest.fixture(scope="module")
def llff_scene(tmp_path_factory: pytest.TempPathFactory):
    return make_scene(tmp_path_factory.mktemp("llff") / "scene", "tabletop", num_views=NUM_VIEWS, width=W, height=H)


def _read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _pixel_ray(c2w: np.ndarray, intrinsics, u: int, v: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray through the centre of pixel (column u, row v), written independently of the generator's own code."""
    fx, fy, cx, cy = intrinsics
    d_cam = np.array([(u + 0.5 - cx) / fx, -(v + 0.5 - cy) / fy, -1.0])
    d = c2w[:3, :3] @ d_cam
    return c2w[:3, 3].copy(), d / np.linalg.norm(d)


def _project(point: np.ndarray, c2w: np.ndarray, intrinsics) -> tuple[int, int]:
    """Pixel (column, row) containing the image of a world point under the OpenGL pinhole convention."""
    fx, fy, cx, cy = intrinsics
    x, y, z = c2w[:3, :3].T @ (point - c2w[:3, 3])
    assert z < 0, "point is behind the camera"
    return int(np.floor(fx * x / -z + cx)), int(np.floor(-fy * y / -z + cy))


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------------------------


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    kwargs = dict(num_views=3, width=40, height=30)
    make_scene(tmp_path / "a", "occlusion", seed=3, **kwargs)
    make_scene(tmp_path / "b", "occlusion", seed=3, **kwargs)
    make_scene(tmp_path / "c", "occlusion", seed=4, **kwargs)
    a, b, c = (_all_files(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["images/frame_00000.png"] != c["images/frame_00000.png"]
    assert not np.array_equal(
        np.load(tmp_path / "a" / "poses_bounds.npy"), np.load(tmp_path / "c" / "poses_bounds.npy")
    )


# ----------------------------------------------------------------------------------------------------------------
# Labels agree with the geometry
# ----------------------------------------------------------------------------------------------------------------


def test_sphere_labels_match_an_independent_ray_sphere_test(llff_scene) -> None:
    info = llff_scene
    apple_label = info.class_names.index("red apple")
    (apple,) = [p for p in info.spec.primitives if p.prompt == "red apple"]
    assert isinstance(apple, Sphere)
    center = np.asarray(apple.center)
    for i, c2w in enumerate(info.camera_to_worlds):
        labelled = info.labels[i] == apple_label
        assert labelled.sum() > 20, f"view {i}: the apple should be visible"
        for v in range(H):
            for u in range(W):
                o, d = _pixel_ray(c2w, info.intrinsics, u, v)
                oc = o - center
                b = oc @ d
                disc = b * b - (oc @ oc - apple.radius**2)
                t = -b - np.sqrt(disc) if disc >= 0 else np.inf
                z = t * (d @ -c2w[:3, 2])
                if labelled[v, u]:
                    assert np.isfinite(t) and z == pytest.approx(info.depths[i, v, u], rel=1e-9, abs=1e-9)
                elif np.isfinite(t):
                    # The ray hits the apple, so whatever is labelled here must be in front of it.
                    assert info.depths[i, v, u] < z


def test_pixel_rays_recast_one_by_one_give_the_same_labels(llff_scene) -> None:
    info = llff_scene
    prim_labels = info.spec.primitive_labels()
    rng = np.random.default_rng(0)
    for i in (0, NUM_VIEWS - 1):
        for u, v in zip(rng.integers(0, W, 200), rng.integers(0, H, 200), strict=True):
            o, d = _pixel_ray(info.camera_to_worlds[i], info.intrinsics, int(u), int(v))
            hit = cast_rays(info.spec.primitives, o[None], d[None])
            expected = prim_labels[hit.index[0]] if hit.index[0] >= 0 else UNLABELLED
            assert info.labels[i, v, u] == expected


def test_projected_object_point_lands_on_its_class(llff_scene) -> None:
    info = llff_scene
    for prompt in ("red apple", "green ball"):
        label = info.class_names.index(prompt)
        (sphere,) = [p for p in info.spec.primitives if p.prompt == prompt]
        center = np.asarray(sphere.center)
        for i, c2w in enumerate(info.camera_to_worlds):
            # The sphere point facing the camera is visible (nothing stands between camera and these objects).
            to_camera = c2w[:3, 3] - center
            point = center + sphere.radius * to_camera / np.linalg.norm(to_camera)
            u, v = _project(point, c2w, info.intrinsics)
            assert 0 <= u < W and 0 <= v < H
            assert info.labels[i, v, u] == label, f"view {i}: {prompt} projects to ({u}, {v})"
            assert info.depths[i, v, u] == pytest.approx(-(c2w[:3, :3].T @ (point - c2w[:3, 3]))[2], rel=0.05)


def test_primitive_intersections_on_hand_made_rays() -> None:
    o = np.zeros((1, 3))
    down = np.array([[0.0, -1.0, 0.0]])
    ahead = np.array([[0.0, 0.0, -1.0]])
    grey = Material((0.5, 0.5, 0.5))
    floor = Plane((0.0, -2.0, 0.0), (0.0, 1.0, 0.0), "floor", grey)
    box = Box((-1.0, -1.0, -5.0), (1.0, 1.0, -3.0), "box", grey)
    pole = Cylinder((0.0, -4.0), 0.5, -1.0, 1.0, "pole", grey)
    cap = Cylinder((0.0, 0.0), 0.5, -3.0, -1.0, "cap", grey)
    assert floor.intersect(o, down)[0] == pytest.approx(2.0)
    assert np.isinf(floor.intersect(o, ahead)[0])
    assert box.intersect(o, ahead)[0] == pytest.approx(3.0)
    assert np.isinf(box.intersect(o, down)[0])
    assert pole.intersect(o, ahead)[0] == pytest.approx(3.5)
    assert cap.intersect(o, down)[0] == pytest.approx(1.0)
    np.testing.assert_allclose(cap.normal_at(np.array([[0.1, -1.0, 0.1]])), [[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(pole.normal_at(np.array([[0.0, 0.0, -3.5]])), [[0.0, 0.0, 1.0]])
    # Nearest hit wins regardless of the primitives' order.
    hits = cast_rays([box, pole], o, ahead)
    assert hits.index[0] == 0 and hits.t[0] == pytest.approx(3.0)
    assert cast_rays([pole, box], o, ahead).index[0] == 1


# ----------------------------------------------------------------------------------------------------------------
# Files on disk
# ----------------------------------------------------------------------------------------------------------------


def test_segmentations_and_labels_agree(llff_scene) -> None:
    info = llff_scene
    root = info.out_dir
    classes = (root / "segmentations" / "classes.txt").read_text().splitlines()
    names = json.loads((root / "labels" / "names.json").read_text())
    assert classes == sorted(classes) == names == info.class_names
    assert info.annotated_views == [0, 2, 3, 5]
    view_dirs = sorted(int(p.name) for p in (root / "segmentations").iterdir() if p.is_dir())
    assert view_dirs == info.annotated_views

    image_paths = sorted((root / "images").iterdir())
    assert image_paths == info.image_paths
    for i, path in enumerate(image_paths):
        rgb = _read_png(path)
        assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
        label_map = _read_png(root / "labels" / path.name)
        assert label_map.shape == (H, W) and label_map.dtype == np.uint8
        np.testing.assert_array_equal(label_map, info.labels[i])

    for i in info.annotated_views:
        masks = []
        for k, name in enumerate(classes):
            mask = _read_png(root / "segmentations" / str(i) / f"{name}.png")
            assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            np.testing.assert_array_equal(mask == 255, info.labels[i] == k)
            masks.append(mask == 255)
        # Every pixel is hit by exactly one class in these closed scenes.
        np.testing.assert_array_equal(np.sum(masks, axis=0), 1)


def test_poses_bounds_round_trip(llff_scene) -> None:
    info = llff_scene
    pb = np.load(info.out_dir / "poses_bounds.npy")
    assert pb.shape == (NUM_VIEWS, 17) and pb.dtype == np.float64
    np.testing.assert_allclose(llff_to_opengl(pb), info.camera_to_worlds, atol=1e-12)

    # The standard LLFF reading, spelled out: columns [down, right, back] -> OpenGL [right, up, back].
    poses = pb[:, :15].reshape(-1, 3, 5)
    opengl = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)
    np.testing.assert_allclose(opengl, info.camera_to_worlds[:, :3, :4], atol=1e-12)

    fx, fy, cx, cy = info.intrinsics
    assert fx == fy and (cx, cy) == (W / 2, H / 2)
    np.testing.assert_allclose(poses[:, :, 4], np.tile([H, W, fx], (NUM_VIEWS, 1)))

    rot = info.camera_to_worlds[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.tile(np.eye(3), (NUM_VIEWS, 1, 1)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0)

    near, far = pb[:, 15], pb[:, 16]
    np.testing.assert_allclose(pb[:, 15:], info.near_far)
    assert np.all(near > 0) and np.all(far > near)
    for i in range(NUM_VIEWS):
        inside = (info.depths[i] >= near[i]) & (info.depths[i] <= far[i])
        assert inside.mean() > 0.98


def test_nerfstudio_format(tmp_path: Path) -> None:
    info = make_scene(tmp_path / "ns", "orbit360", num_views=4, width=W, height=H, fmt="nerfstudio")
    root = info.out_dir
    assert not (root / "poses_bounds.npy").exists()
    meta = json.loads((root / "transforms.json").read_text())
    fx, fy, cx, cy = info.intrinsics
    assert (meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], meta["w"], meta["h"]) == (fx, fy, cx, cy, W, H)
    assert meta["camera_model"] in ("OPENCV", "PINHOLE")
    assert [f["file_path"] for f in meta["frames"]] == [f"images/{p.name}" for p in info.image_paths]
    for frame, c2w in zip(meta["frames"], info.camera_to_worlds, strict=True):
        assert (root / frame["file_path"]).is_file()
        np.testing.assert_allclose(frame["transform_matrix"], c2w)
    assert (root / "segmentations" / "classes.txt").is_file()


def test_nerfstudio_dataparser_reads_the_scene(tmp_path: Path) -> None:
    parser_module = pytest.importorskip("nerfstudio.data.dataparsers.nerfstudio_dataparser")
    info = make_scene(tmp_path / "ns", "tabletop", num_views=4, width=W, height=H, fmt="nerfstudio")
    config = parser_module.NerfstudioDataParserConfig(
        data=info.out_dir,
        orientation_method="none",
        center_method="none",
        auto_scale_poses=False,
        eval_mode="all",
    )
    outputs = config.setup().get_dataparser_outputs(split="train")
    cameras = outputs.cameras
    assert [Path(p).name for p in outputs.image_filenames] == [p.name for p in info.image_paths]
    np.testing.assert_allclose(cameras.camera_to_worlds.numpy(), info.camera_to_worlds[:, :3, :4], atol=1e-5)
    np.testing.assert_allclose(cameras.fx.numpy().ravel(), info.intrinsics[0], rtol=1e-6)
    assert int(cameras.width[0]) == W and int(cameras.height[0]) == H


def test_without_labels_and_custom_annotated_views(tmp_path: Path) -> None:
    info = make_scene(
        tmp_path / "s", "textured", num_views=3, width=32, height=24, annotated_views=[1], write_labels=False
    )
    root = info.out_dir
    assert not (root / "labels").exists()
    assert sorted(p.name for p in (root / "segmentations").iterdir()) == ["1", "classes.txt"]
    assert sorted(p.stem for p in (root / "segmentations" / "1").iterdir()) == info.class_names


def test_regenerating_replaces_the_previous_scene(tmp_path: Path) -> None:
    out = tmp_path / "s"
    make_scene(out, "tabletop", num_views=5, width=32, height=24)
    make_scene(out, "textured", num_views=2, width=32, height=24, fmt="nerfstudio")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["frame_00000.png", "frame_00001.png"]
    assert not (out / "poses_bounds.npy").exists()
    assert sorted(p.name for p in (out / "segmentations").iterdir()) == ["0", "1", "classes.txt"]
    assert len(list((out / "labels").iterdir())) == 3
    assert json.loads((out / MARKER_FILE).read_text())["preset"] == "textured"


def test_refuses_to_overwrite_foreign_data(tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    (capture / "images").mkdir(parents=True)
    (capture / "images" / "frame_00001.png").write_bytes(b"real photo")
    with pytest.raises(FileExistsError, match="not written by make_scene"):
        make_scene(capture, num_views=2, width=16, height=12)
    assert (capture / "images" / "frame_00001.png").read_bytes() == b"real photo"


def test_invalid_arguments_explain_themselves(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="available presets: .*tabletop"):
        make_scene(tmp_path / "a", "kitchen")
    with pytest.raises(ValueError, match="out of range"):
        make_scene(tmp_path / "b", num_views=3, annotated_views=[3])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------------------------


def _render_all(spec, num_views: int = 4, width: int = W, height: int = H):
    c2ws = camera_poses(spec.rig, num_views)
    intrinsics = intrinsics_from_fov(spec.fov_x_deg, width, height)
    return [render_view(spec, c2w, intrinsics, width, height) for c2w in c2ws]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_render_non_trivial_scenes(preset: str) -> None:
    spec = PRESETS[preset](0)
    views = _render_all(spec)
    labels = np.stack([v.labels for v in views])
    assert not np.any(labels == UNLABELLED), "every ray should hit the enclosing floor/walls"
    fractions = np.bincount(labels.ravel(), minlength=len(spec.class_names)) / labels.size
    assert len(spec.class_names) >= 4
    assert np.all(fractions > 0), f"classes never visible: {np.array(spec.class_names)[fractions == 0]}"
    assert np.sum(fractions >= 0.05) >= 3, dict(zip(spec.class_names, fractions.round(3), strict=True))
    for view in views:
        assert np.unique(view.labels).size >= 4
        assert view.rgb.std() > 20, "image should not be flat"
    # The rig moves: views differ.
    assert not np.array_equal(views[0].rgb, views[-1].rgb)


def test_similar_colors_preset_has_same_coloured_classes() -> None:
    spec = PRESETS["similar_colors"](0)
    reds = [p for p in spec.primitives if p.prompt.startswith("red ")]
    assert len({p.prompt for p in reds}) >= 2
    colors = np.array([p.material.color for p in reds])
    assert np.abs(colors - colors.mean(axis=0)).max() < 0.05


def test_thin_parts_preset_has_thin_visible_parts() -> None:
    spec = PRESETS["thin_parts"](0)
    thin = [p for p in spec.primitives if isinstance(p, Cylinder) and p.radius <= 0.03]
    assert len(thin) >= 4
    views = _render_all(spec, num_views=2, width=128, height=96)
    # A leg just below the table top is a run of only a few pixels between floor/wall pixels.
    table = spec.class_names.index("wooden table")
    row = views[0].labels[80]
    runs = np.diff(np.flatnonzero(np.diff(np.r_[False, row == table, False])))[::2]
    assert len(runs) >= 2 and runs.min() <= 4


def test_occlusion_preset_hides_objects_behind_others() -> None:
    spec = PRESETS["occlusion"](0)
    backgrounds = {"floor", "wall"}
    objects = [c for c in spec.class_names if c not in backgrounds]
    counts = np.bincount(np.stack([v.labels for v in _render_all(spec, 2)]).ravel(), minlength=len(spec.class_names))
    revealed = []
    for hidden_by in objects:
        without = replace(spec, primitives=tuple(p for p in spec.primitives if p.prompt != hidden_by))
        labels = np.stack([v.labels for v in _render_all(without, 2)])
        # Class indices shift when a class disappears; compare by name.
        new_counts = np.bincount(labels.ravel(), minlength=len(without.class_names))
        new_counts = dict(zip(without.class_names, new_counts, strict=True))
        revealed += [
            (hidden_by, c)
            for c in objects
            if c != hidden_by and new_counts[c] > 1.1 * counts[spec.class_names.index(c)]
        ]
    assert len({behind for _, behind in revealed}) >= 2, revealed


def test_textured_preset_has_texture_edges_inside_classes() -> None:
    spec = PRESETS["textured"](0)
    (view,) = _render_all(spec, 1)
    rgb = view.rgb.astype(np.float64)
    for prompt in ("checkered floor", "striped wallpaper", "striped box", "checkered ball"):
        inside = view.labels == spec.class_names.index(prompt)
        assert rgb[inside].std(axis=0).max() > 15, f"{prompt} should be strongly textured"


def test_orbit360_cameras_go_all_the_way_round() -> None:
    spec = PRESETS["orbit360"](0)
    assert isinstance(spec.rig, OrbitRig)
    c2ws = camera_poses(spec.rig, 12)
    target = np.asarray(spec.rig.target)
    offsets = c2ws[:, :3, 3] - target
    azimuths = np.sort(np.degrees(np.arctan2(offsets[:, 0], offsets[:, 2])))
    assert np.max(np.diff(np.r_[azimuths, azimuths[0] + 360.0])) <= 31.0
    # Every camera looks at the target (-z axis of the OpenGL camera points at it).
    np.testing.assert_allclose(-c2ws[:, :3, 2], -offsets / np.linalg.norm(offsets, axis=1, keepdims=True), atol=1e-12)


def test_render_is_fast_enough() -> None:
    spec = PRESETS["tabletop"](0)
    c2w = camera_poses(spec.rig, 1)[0]
    intrinsics = intrinsics_from_fov(spec.fov_x_deg, 128, 96)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        render_view(spec, c2w, intrinsics, 128, 96)
        best = min(best, time.perf_counter() - start)
    assert best < 0.5, f"128x96 render took {best:.3f} s"


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------


def test_cli_writes_a_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from laser_ns.scripts.make_scene import entrypoint

    out = tmp_path / "scene"
    argv = ["laser-make-scene", "--output-dir", str(out), "--preset", "similar_colors", "--seed", "1"]
    argv += ["--num-views", "3", "--width", "32", "--height", "24", "--format", "nerfstudio", "--no-write-labels"]
    monkeypatch.setattr(sys, "argv", argv)
    entrypoint()
    printed = capsys.readouterr().out
    assert str(out) in printed and "red apple" in printed and "red mug" in printed
    assert (out / "transforms.json").is_file() and not (out / "labels").exists()
    assert len(list((out / "images").iterdir())) == 3

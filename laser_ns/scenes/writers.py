"""Writing a generated scene to disk: images, poses (LLFF ``poses_bounds.npy`` or nerfstudio ``transforms.json``),
the 3D-OVS layout (docs/method.md#3d-ovs-data-format-and-metric) and the per-view label maps
(docs/method.md#per-view-label-maps)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image

from laser_ns.conventions import UNLABELLED
from laser_ns.scenes.cameras import camera_poses, intrinsics_from_fov, opengl_to_llff
from laser_ns.scenes.presets import PRESETS
from laser_ns.scenes.shading import render_view
from laser_ns.scenes.spec import SceneSpec

MARKER_FILE = "synthetic_scene.json"
"""Written into every generated scene; only directories carrying it are ever cleaned before regeneration."""


@dataclass
class SceneInfo:
    """What `make_scene` wrote, with the exact ground truth."""

    out_dir: Path
    """Scene directory."""
    class_names: list[str]
    """Sorted class prompts; label k means class_names[k]."""
    image_paths: list[Path]
    """One RGB image per view, in index order."""
    camera_to_worlds: Float[np.ndarray, "n 4 4"]
    """OpenGL camera-to-world matrices (x right, y up, looking down -z)."""
    intrinsics: tuple[float, float, float, float]
    """Pinhole (fx, fy, cx, cy) in pixels, shared by all views; pixel (u, v) is sampled at (u + 0.5, v + 0.5)."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    annotated_views: list[int]
    """Views with masks under segmentations/."""
    labels: UInt8[np.ndarray, "n h w"]
    """Per-pixel index into `class_names`; `UNLABELLED` where the ray hits nothing."""
    depths: Float[np.ndarray, "n h w"]
    """z-depth of the pixel-centre hit; inf where the ray hits nothing."""
    near_far: Float[np.ndarray, "n 2"]
    """Per-view depth bounds (as written to poses_bounds.npy)."""
    spec: SceneSpec = field(repr=False)
    """The scene description that was rendered."""


def _depth_bounds(depth: Float[np.ndarray, "h w"]) -> tuple[float, float]:
    """LLFF near/far from the hit depths: robust percentiles with a margin so no visible surface is clipped."""
    finite = depth[np.isfinite(depth)]
    if finite.size == 0:
        return 0.1, 100.0
    near = max(0.9 * float(np.percentile(finite, 1.0)), 1e-3)
    far = 1.1 * float(np.percentile(finite, 99.0))
    return near, max(far, 1.5 * near)


_FRAME_RE = re.compile(r"frame_\d{5}\.png")


def _clear_previous_scene(out_dir: Path) -> None:
    """Remove the files a previous `make_scene` run wrote, so fewer views or another format leave nothing stale.

    Only directories carrying `MARKER_FILE` are touched; anything else that is not empty is refused, because a real
    capture (e.g. from ns-process-data, which also writes images/frame_*.png) must never be overwritten.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise NotADirectoryError(f"Scene output {out_dir} exists and is not a directory; choose another --output-dir.")
    if not (out_dir / MARKER_FILE).exists():
        if any(out_dir.iterdir()):
            raise FileExistsError(
                f"{out_dir} is not empty and was not written by make_scene (no {MARKER_FILE}); "
                "choose an empty or new --output-dir so no existing data is overwritten."
            )
        return
    images = out_dir / "images"
    if images.is_dir():
        foreign = [p.name for p in images.iterdir() if not _FRAME_RE.fullmatch(p.name)]
        if foreign:
            raise FileExistsError(
                f"{images} holds files make_scene did not write ({', '.join(sorted(foreign)[:3])}); "
                "they would be read as extra views. Remove them or choose another --output-dir."
            )
        for p in images.glob("frame_*.png"):
            p.unlink()
    labels = out_dir / "labels"
    for p in [*labels.glob("frame_*.png"), labels / "names.json"]:
        p.unlink(missing_ok=True)
    segmentations = out_dir / "segmentations"
    (segmentations / "classes.txt").unlink(missing_ok=True)
    if segmentations.is_dir():
        for view_dir in segmentations.iterdir():
            if view_dir.is_dir() and view_dir.name.isdigit():
                for p in view_dir.glob("*.png"):
                    p.unlink()
                if not any(view_dir.iterdir()):
                    view_dir.rmdir()
    for name in ("poses_bounds.npy", "transforms.json", MARKER_FILE):
        (out_dir / name).unlink(missing_ok=True)


def default_annotated_views(num_views: int, count: int = 4) -> list[int]:
    """`count` view indices spread evenly over the sequence, first and last included."""
    return sorted({int(i) for i in np.round(np.linspace(0, num_views - 1, min(count, num_views)))})


def make_scene(
    out_dir: Path,
    preset: str = "tabletop",
    *,
    seed: int = 0,
    num_views: int = 24,
    width: int = 128,
    height: int = 96,
    annotated_views: Sequence[int] | None = None,
    fmt: Literal["llff", "nerfstudio"] = "llff",
    write_labels: bool = True,
) -> SceneInfo:
    """Render preset `preset` with `seed` and write it to `out_dir` in the 3D-OVS layout (LLFF or nerfstudio poses).

    Regenerating into a directory previously written by `make_scene` replaces its files; any other non-empty
    directory is refused.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown scene preset {preset!r}; available presets: {', '.join(sorted(PRESETS))}.")
    if fmt not in ("llff", "nerfstudio"):
        raise ValueError(f"Unknown scene format {fmt!r}; use 'llff' or 'nerfstudio'.")
    if width < 1 or height < 1:
        raise ValueError(f"Image size must be positive, got width={width}, height={height}.")
    if num_views < 1:
        raise ValueError(f"num_views must be at least 1, got {num_views}.")
    views = default_annotated_views(num_views) if annotated_views is None else sorted({int(i) for i in annotated_views})
    bad = [i for i in views if not 0 <= i < num_views]
    if bad:
        raise ValueError(
            f"Annotated views {bad} are out of range for {num_views} views; use indices 0..{num_views - 1}."
        )

    spec = PRESETS[preset](seed)
    class_names = spec.class_names
    if len(class_names) >= UNLABELLED:
        raise ValueError(f"Preset {preset!r} has {len(class_names)} classes; 8-bit label maps hold at most 254.")
    bad_names = [c for c in class_names if not c or "/" in c or "\\" in c or c != c.strip()]
    if bad_names:
        raise ValueError(f"Class prompts {bad_names} of preset {preset!r} cannot be used as mask file names.")

    out_dir = Path(out_dir)
    _clear_previous_scene(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)

    c2ws = camera_poses(spec.rig, num_views)
    intrinsics = intrinsics_from_fov(spec.fov_x_deg, width, height)
    image_paths, labels, depths, near_far = [], [], [], []
    for i, c2w in enumerate(c2ws):
        view = render_view(spec, c2w, intrinsics, width, height)
        path = out_dir / "images" / f"frame_{i:05d}.png"
        Image.fromarray(view.rgb).save(path)
        image_paths.append(path)
        labels.append(view.labels)
        depths.append(view.depth)
        near_far.append(_depth_bounds(view.depth))
    label_maps = np.stack(labels)
    bounds = np.asarray(near_far, dtype=np.float64)

    if fmt == "llff":
        np.save(out_dir / "poses_bounds.npy", opengl_to_llff(c2ws, height, width, intrinsics[0], bounds))
    else:
        fx, fy, cx, cy = intrinsics
        transforms = {
            "camera_model": "OPENCV",
            "fl_x": fx,
            "fl_y": fy,
            "cx": cx,
            "cy": cy,
            "w": width,
            "h": height,
            "k1": 0.0,
            "k2": 0.0,
            "p1": 0.0,
            "p2": 0.0,
            # Adding 0.0 turns -0.0 entries into 0.0 so the JSON reads cleanly.
            "frames": [
                {"file_path": f"images/{p.name}", "transform_matrix": (c2w + 0.0).tolist()}
                for p, c2w in zip(image_paths, c2ws, strict=True)
            ],
        }
        (out_dir / "transforms.json").write_text(json.dumps(transforms, indent=2))

    segmentations = out_dir / "segmentations"
    segmentations.mkdir(exist_ok=True)
    (segmentations / "classes.txt").write_text("".join(f"{c}\n" for c in class_names))
    for i in views:
        view_dir = segmentations / str(i)
        view_dir.mkdir(exist_ok=True)
        for k, name in enumerate(class_names):
            mask = np.where(label_maps[i] == k, 255, 0).astype(np.uint8)
            Image.fromarray(mask).save(view_dir / f"{name}.png")

    if write_labels:
        labels_dir = out_dir / "labels"
        labels_dir.mkdir(exist_ok=True)
        (labels_dir / "names.json").write_text(json.dumps(class_names))
        for path, label_map in zip(image_paths, label_maps, strict=True):
            Image.fromarray(label_map).save(labels_dir / path.name)

    marker = {"preset": preset, "seed": seed, "num_views": num_views, "width": width, "height": height, "format": fmt}
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2))

    return SceneInfo(
        out_dir=out_dir,
        class_names=class_names,
        image_paths=image_paths,
        camera_to_worlds=c2ws,
        intrinsics=intrinsics,
        width=width,
        height=height,
        annotated_views=views,
        labels=label_maps,
        depths=np.stack(depths),
        near_far=bounds,
        spec=spec,
    )

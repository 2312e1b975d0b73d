"""A dataparser that reads 3D-OVS / LLFF scenes and nerfstudio scenes, with their language annotations.

Forward-facing LLFF captures are handled with nerfacto's scene contraction rather than NDC: NDC only fits rays
that all look one way and breaks nerfstudio's viewer, spiral renders and proposal sampling, whereas contraction
keeps the whole camera model metric. We centre the scene on the middle of the depth bounds and scale the depth
range into the unit box, so the objects live in the uncontracted, high-resolution part of the hash grid.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification
from nerfstudio.utils.rich_utils import CONSOLE

from laser_ns.data.semantics import SceneFormatError, SceneSemantics, image_size, load_semantics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")


@dataclass
class LaserDataParserConfig(DataParserConfig):
    """Reads a 3D-OVS/LLFF scene (``poses_bounds.npy``) or a nerfstudio scene (``transforms.json``)."""

    _target: type = field(default_factory=lambda: LaserDataParser)
    data: Path = Path()
    """Scene folder: holds poses_bounds.npy + images/ (3D-OVS/LLFF) or transforms.json (nerfstudio)."""
    scene_format: Literal["auto", "llff", "nerfstudio"] = "auto"
    """Which layout the scene folder uses; auto picks by the files present."""
    eval_interval: int = 8
    """Without annotated views, every eval_interval-th image is used for evaluation."""
    scene_scale: float = 1.0
    """Size of the scene box that holds the content, after the scene is normalised."""


class LaserDataParser(DataParser):
    """All images train (the 3D-OVS protocol); annotated views (or every n-th image) evaluate."""

    config: LaserDataParserConfig

    def __init__(self, config: LaserDataParserConfig):
        super().__init__(config=config)
        # nerfstudio asks for the train split and then the eval split; both are cut from one parse of the scene.
        self._parsed: tuple[tuple, DataparserOutputs, SceneSemantics] | None = None

    def _parse(self) -> tuple[DataparserOutputs, SceneSemantics]:
        """The whole scene and its annotations, read once per setting of the config (a changed config reads again)."""
        key = (self.config.data, self.config.scene_format, self.config.scene_scale)
        if self._parsed is None or self._parsed[0] != key:
            full = self._parse_llff() if self.scene_format() == "llff" else self._parse_nerfstudio()
            self._parsed = (key, full, load_semantics(self.config.data, full.image_filenames))
        return self._parsed[1], self._parsed[2]

    def scene_format(self) -> Literal["llff", "nerfstudio"]:
        data = self.config.data
        if not data.is_dir():
            where = "" if data.is_absolute() else f" (read relative to the current folder {Path.cwd()})"
            raise SceneFormatError(
                f"Scene folder {data} does not exist{where}. Train with --data pointing at a scene folder; a saved "
                "run names its scene in config.yml under pipeline.datamanager.data: fix that path if the scene moved."
            )
        if self.config.scene_format != "auto":
            return self.config.scene_format
        if (data / "poses_bounds.npy").exists():
            return "llff"
        if (data / "transforms.json").exists():
            return "nerfstudio"
        raise SceneFormatError(
            f"{data} holds neither poses_bounds.npy (3D-OVS/LLFF) nor transforms.json (nerfstudio). "
            "Point --data at a scene folder, or create poses with ns-process-data."
        )

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        full, semantics = self._parse()
        indices = self._split_indices(split, len(full.image_filenames), semantics)
        metadata = {
            "class_names": list(semantics.class_names),
            "semantics": semantics,
            "image_indices": [int(i) for i in indices],
        }
        return DataparserOutputs(
            image_filenames=[full.image_filenames[i] for i in indices],
            cameras=full.cameras[torch.tensor(indices, dtype=torch.long)],
            scene_box=full.scene_box,
            metadata=metadata,
            dataparser_transform=full.dataparser_transform,
            dataparser_scale=full.dataparser_scale,
        )

    def _split_indices(self, split: str, num_images: int, semantics: SceneSemantics) -> list[int]:
        if split == "train":
            return list(range(num_images))
        if semantics.annotated_masks:
            return sorted(semantics.annotated_masks)
        return list(range(0, num_images, self.config.eval_interval))

    def _parse_nerfstudio(self) -> DataparserOutputs:
        # Delegate geometry to nerfstudio's own parser; we only choose the split ourselves.
        parser = NerfstudioDataParserConfig(data=self.config.data, eval_mode="all", downscale_factor=1).setup()
        outputs = parser.get_dataparser_outputs(split="train")
        transforms = self.config.data / "transforms.json"
        cameras = outputs.cameras
        for i, path in enumerate(outputs.image_filenames):
            width, height = image_size(path)
            expected = int(cameras.width[i, 0]), int(cameras.height[i, 0])
            if (width, height) != expected:
                # nerfstudio would only fail later, stacking images of two sizes into one batch
                raise SceneFormatError(
                    f"{path} is {width}x{height} pixels, but {transforms} gives its camera "
                    f"{expected[0]}x{expected[1]}. Resize the image to {expected[0]}x{expected[1]}, or, if the image "
                    "is right, correct its "
                    "'w'/'h' and intrinsics in transforms.json (or remove its frame)."
                )
        return outputs

    def _parse_llff(self) -> DataparserOutputs:
        data = self.config.data
        poses_file = data / "poses_bounds.npy"
        try:
            poses_bounds = np.load(poses_file)
        except Exception as err:
            raise SceneFormatError(f"Cannot read {poses_file}: {err}. Regenerate it with LLFF's imgs2poses.") from err
        if poses_bounds.ndim != 2 or poses_bounds.shape[1] != 17:
            raise SceneFormatError(
                f"{poses_file} has shape {poses_bounds.shape}; LLFF poses are N x 17 (3x5 pose+hwf, near, far)."
            )
        image_dir = data / "images"
        if not image_dir.is_dir():
            raise SceneFormatError(f"{data} has poses_bounds.npy but no images/ folder. Put the images in {image_dir}.")
        image_filenames = sorted(p for p in image_dir.iterdir() if p.suffix in IMAGE_SUFFIXES)
        if len(image_filenames) != len(poses_bounds):
            raise SceneFormatError(
                f"{poses_file} holds {len(poses_bounds)} poses but {image_dir} holds {len(image_filenames)} images. "
                "Each image (sorted by name) needs exactly one pose row: remove extra images or regenerate poses."
            )
        sizes = [image_size(p) for p in image_filenames]
        (width, height), _ = Counter(sizes).most_common(1)[0]
        odd = [(p, size) for p, size in zip(image_filenames, sizes, strict=True) if size != (width, height)]
        if odd:
            listed = ", ".join(f"{p.name} is {w}x{h}" for p, (w, h) in odd[:5]) + (", ..." if len(odd) > 5 else "")
            raise SceneFormatError(
                f"{odd[0][0]} is {odd[0][1][0]}x{odd[0][1][1]} pixels, but most images in {image_dir} are "
                f"{width}x{height}; an LLFF scene needs one size ({len(odd)} differ: {listed}). Resize them to "
                f"{width}x{height}, or remove them with their rows of {poses_file.name}."
            )

        poses = poses_bounds[:, :15].reshape(-1, 3, 5)
        bounds = poses_bounds[:, 15:17]
        hwf_height, hwf_width, focal = poses[0, :, 4]
        focal = focal * width / hwf_width  # poses may describe the full-resolution capture
        if abs(hwf_height / hwf_width - height / width) > 0.02:
            CONSOLE.print(f"[yellow]{poses_file}: aspect ratio of hwf differs from the images'; using image size.")
        # LLFF rotation columns are [down, right, back]; nerfstudio wants OpenGL [right, up, back].
        c2w = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)
        c2w, transform, scale = _normalise_forward_facing(c2w, bounds)

        cameras = Cameras(
            camera_to_worlds=torch.from_numpy(c2w).float(),
            fx=float(focal),
            fy=float(focal),
            cx=width / 2.0,
            cy=height / 2.0,
            width=width,
            height=height,
            camera_type=CameraType.PERSPECTIVE,
        )
        s = self.config.scene_scale
        return DataparserOutputs(
            image_filenames=image_filenames,
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-s, -s, -s], [s, s, s]], dtype=torch.float32)),
            dataparser_transform=torch.from_numpy(transform).float(),
            dataparser_scale=scale,
        )


def _normalise_forward_facing(c2w: np.ndarray, bounds: np.ndarray):
    """Rotate so the mean camera looks down -z with +y up, centre on the content and scale depths into [-1, 1].

    Returns the new [N, 3, 4] poses, the applied [3, 4] transform and the scale.
    """
    forward = -c2w[:, :, 2].mean(axis=0)
    forward /= np.linalg.norm(forward)
    up = c2w[:, :, 1].mean(axis=0)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rotation = np.stack([right, up, -forward], axis=0)  # rows: world axes in the old frame

    near = float(np.percentile(bounds[:, 0], 5))
    far = float(np.percentile(bounds[:, 1], 95))
    centre = c2w[:, :, 3].mean(axis=0) + forward * (near + far) / 2.0
    scale = 2.0 / max(far - near, 1e-6)

    transform = np.concatenate([rotation, -rotation @ centre[:, None]], axis=1)
    out = np.empty_like(c2w)
    out[:, :, :3] = np.einsum("ij,njk->nik", rotation, c2w[:, :, :3])
    out[:, :, 3] = (np.einsum("ij,nj->ni", rotation, c2w[:, :, 3] - centre)) * scale
    return out, transform, scale


laser_dataparser = DataParserSpecification(
    config=LaserDataParserConfig(),
    description="3D-OVS/LLFF or nerfstudio scenes with optional segmentations/ and labels/ folders (laser_ns).",
)

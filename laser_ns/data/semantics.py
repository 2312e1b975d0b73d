"""Reading and validating a scene's language annotations.

Two optional layouts (docs/method.md#3d-ovs-data-format-and-metric, docs/method.md#per-view-label-maps):

- ``segmentations/``: 3D-OVS evaluation masks. ``classes.txt`` lists the prompts (sorted after reading);
  ``segmentations/<i>/<prompt>.png`` is a binary mask per class for each annotated view ``i``.
- ``labels/``: our per-view label maps. ``names.json`` lists the prompts; ``labels/<image stem>.png`` is an
  8-bit index image (255 = unlabelled).

Everything is validated up front so that a bad scene fails before any training or feature extraction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from laser_ns.conventions import UNLABELLED
from laser_ns.errors import UserError


class SceneFormatError(UserError, ValueError):
    """A scene folder does not follow the expected layout; the message names the file and the fix."""


@dataclass
class SceneSemantics:
    """The language annotations of a scene, resolved to file paths and validated."""

    class_names: list[str] = field(default_factory=list)
    """Class prompts, sorted alphabetically (the 3D-OVS convention)."""
    annotated_masks: dict[int, dict[str, Path]] = field(default_factory=dict)
    """For each annotated image index, the mask file of every class."""
    label_names: list[str] = field(default_factory=list)
    """Prompts of ``labels/names.json`` in file order (label value k means ``label_names[k]``)."""
    label_paths: dict[str, Path] = field(default_factory=dict)
    """Label map per image stem."""

    @property
    def has_classes(self) -> bool:
        return len(self.class_names) > 0


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, read from its header; a clear error if it cannot be read."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            return im.size
    except Exception as err:  # PIL raises many types for broken files
        raise SceneFormatError(
            f"Cannot read image {path}: {err}. Replace or remove the file (and its pose) and run again."
        ) from err


def read_class_names(classes_file: Path) -> list[str]:
    """The sorted, de-duplicated prompts of a ``classes.txt``."""
    names = [line.strip() for line in classes_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise SceneFormatError(
            f"{classes_file} is empty. Write one class prompt per line (e.g. 'red apple'), or delete the "
            "segmentations/ folder to train without classes."
        )
    return sorted(set(names))


def load_semantics(data_dir: Path, image_filenames: Sequence[Path]) -> SceneSemantics:
    """Find and validate ``segmentations/`` and ``labels/`` of a scene whose images are ``image_filenames``."""
    semantics = SceneSemantics()
    seg_dir = data_dir / "segmentations"
    if seg_dir.is_dir():
        classes_file = seg_dir / "classes.txt"
        if not classes_file.exists():
            raise SceneFormatError(f"{seg_dir} has no classes.txt. Add {classes_file} with one class prompt per line.")
        semantics.class_names = read_class_names(classes_file)
        semantics.annotated_masks = _annotated_masks(seg_dir, semantics.class_names, image_filenames)

    labels_dir = data_dir / "labels"
    if labels_dir.is_dir():
        semantics.label_names, semantics.label_paths = _label_maps(labels_dir, image_filenames)
        if semantics.has_classes and sorted(set(semantics.label_names)) != semantics.class_names:
            raise SceneFormatError(
                f"The prompts of {labels_dir / 'names.json'} ({sorted(set(semantics.label_names))}) differ from "
                f"{seg_dir / 'classes.txt'} ({semantics.class_names}). Make both list the same prompts."
            )
        if not semantics.has_classes:
            semantics.class_names = sorted(set(semantics.label_names))
    return semantics


def _annotated_masks(
    seg_dir: Path, class_names: list[str], image_filenames: Sequence[Path]
) -> dict[int, dict[str, Path]]:
    annotated: dict[int, dict[str, Path]] = {}
    for view_dir in sorted(p for p in seg_dir.iterdir() if p.is_dir()):
        if not view_dir.name.isdigit():
            raise SceneFormatError(
                f"{view_dir} is not an image index. Annotated view folders are named by the integer index of "
                "the image in the sorted images/ folder (e.g. segmentations/0/)."
            )
        index = int(view_dir.name)
        if index >= len(image_filenames):
            raise SceneFormatError(
                f"{view_dir} names image {index}, but the scene has {len(image_filenames)} images "
                f"(indices 0..{len(image_filenames) - 1}). Rename the folder to the right index."
            )
        width, height = image_size(image_filenames[index])
        masks = {}
        for name in class_names:
            mask_path = view_dir / f"{name}.png"
            if not mask_path.exists():
                raise SceneFormatError(
                    f"Annotated view {index} has no mask for class '{name}': {mask_path} is missing. Add it "
                    "(an all-black PNG if the class is not visible), or remove the class from classes.txt."
                )
            mask_size = image_size(mask_path)
            if mask_size != (width, height):
                raise SceneFormatError(
                    f"Mask {mask_path} is {mask_size[0]}x{mask_size[1]} but its image {image_filenames[index]} is "
                    f"{width}x{height}. Resize the mask (nearest neighbour) to the image size."
                )
            masks[name] = mask_path
        annotated[index] = masks
    return annotated


def _label_maps(labels_dir: Path, image_filenames: Sequence[Path]) -> tuple[list[str], dict[str, Path]]:
    names_file = labels_dir / "names.json"
    if not names_file.exists():
        raise SceneFormatError(f"{labels_dir} has no names.json. Add a JSON list of prompts: label k means names[k].")
    try:
        names = json.loads(names_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SceneFormatError(f"{names_file} is not valid JSON ({err}). Write a JSON list of prompts.") from err
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise SceneFormatError(f"{names_file} must be a non-empty JSON list of non-empty prompt strings.")
    if len(names) >= UNLABELLED:
        raise SceneFormatError(f"{names_file} lists {len(names)} classes; label maps hold at most 255.")
    paths = {}
    for image_path in image_filenames:
        label_path = labels_dir / f"{image_path.stem}.png"
        if not label_path.exists():
            raise SceneFormatError(
                f"Image {image_path.name} has no label map {label_path}. Every image needs one when labels/ "
                "exists (use value 255 for unlabelled pixels)."
            )
        if image_size(label_path) != image_size(image_path):
            raise SceneFormatError(
                f"Label map {label_path} is {image_size(label_path)} but {image_path} is {image_size(image_path)}. "
                "Resize it (nearest neighbour) to the image size."
            )
        paths[image_path.stem] = label_path
    return names, paths


def read_label_map(path: Path, label_names: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """A label map as int64 indices into ``class_names`` (-1 = unlabelled)."""
    raw = np.asarray(Image.open(path))
    if raw.ndim != 2:
        raise SceneFormatError(f"Label map {path} must be a single-channel 8-bit image, got shape {raw.shape}.")
    lookup = np.full(256, -1, dtype=np.int64)
    for k, name in enumerate(label_names):
        lookup[k] = class_names.index(name)
    out = lookup[raw]
    bad = (out < 0) & (raw != UNLABELLED)
    if bad.any():
        raise SceneFormatError(
            f"Label map {path} uses value {int(raw[bad][0])}, which names.json does not define "
            f"({len(label_names)} names). Use 0..{len(label_names) - 1} or 255 for unlabelled."
        )
    return out


def read_mask_values(
    masks: dict[str, Path], class_names: Sequence[str], size: tuple[int, int] | None = None
) -> np.ndarray:
    """The 8-bit values of one annotated view's class masks, uint8 [C, H, W] in ``class_names`` order.

    Read exactly as 3D-OVS's ``dataLoader/llff.py`` reads them: converted to grayscale (PIL "L") and, when ``size``
    (width, height) differs from the file's, resized with PIL NEAREST (the source pixel under each output pixel's
    centre), before any threshold. Which values count as "in the class" is the evaluation protocol's rule
    (:func:`laser_ns.eval.metrics.masks_from_values`), so it is applied after the resize, as there.
    """
    planes = []
    for name in class_names:
        with Image.open(masks[name]) as image:
            gray = image.convert("L")
        if size is not None and gray.size != tuple(size):
            gray = gray.resize(tuple(size), Image.NEAREST)
        planes.append(np.asarray(gray))
    return np.stack(planes)

"""On-disk cache of per-image dense teacher features (fp16), so the teacher runs once per image, not once per step.

Layout::

    <root>/<teacher key>/config.json     the teacher identity, readable (what produced these features)
    <root>/<teacher key>/<image key>.pt  {"format", "teacher_key", "image_key", "features": fp16 [h, w, D]}

``teacher key`` hashes the teacher's :meth:`identity` (model, weights, mode, degradations...); ``image key`` hashes
the image tensor's bytes, dtype and shape, and the label map's if any. Any change to either gives a new key, so a
stale entry is never read; nothing is ever deleted. Files are written to a temporary name and renamed into place, so
an interrupted run leaves no half-written entry; a file that still fails to load or does not match its key is
logged once and recomputed, never trusted.
"""

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm import tqdm

from laser_ns.errors import UserError, write_probe
from laser_ns.teachers.base import DenseTeacher

logger = logging.getLogger(__name__)

_FILE_FORMAT = 1
"""Version of the per-image file layout."""


def identity_key(identity: dict[str, Any]) -> str:
    """Stable short hash of a teacher identity (key order does not matter)."""
    try:
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    except TypeError as error:
        raise TypeError(
            f"Teacher identity must be JSON-able (it is the cache key): {error}. Got {identity!r}"
        ) from error
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _update_with_tensor(digest: Any, name: str, tensor: Tensor | None) -> None:
    if tensor is None:
        digest.update(f"{name}:none;".encode())
        return
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
    # Viewing as bytes handles every dtype (numpy has no bfloat16).
    digest.update(flat.view(torch.uint8).numpy().tobytes())


def image_key(image: Float[Tensor, "H W 3"], labels: Int[Tensor, "H W"] | None = None) -> str:
    """sha256 of the image (and label map) contents, dtypes and shapes."""
    digest = hashlib.sha256()
    _update_with_tensor(digest, "image", image)
    _update_with_tensor(digest, "labels", labels)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then move the result onto ``path`` in one step."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def stored_form(features: Float[Tensor, "h w D"]) -> Float[Tensor, "h w D"]:
    """Features as the cache stores and returns them: detached fp16 on the CPU, contiguous."""
    return features.detach().to(dtype=torch.float16).cpu().contiguous()


class CacheNotWritableError(UserError, RuntimeError):
    """The cache folder cannot be written (read-only scene folder, a file in the way...); names the fix."""


class FeatureCache:
    """Dense features of one teacher (fixed by its identity), one file per image under ``root``."""

    def __init__(self, root: Path, teacher_identity: dict[str, Any]) -> None:
        self.root = Path(root)
        self.teacher_identity = teacher_identity
        self.teacher_key = identity_key(teacher_identity)
        self.folder = self.root / self.teacher_key
        self._writable_checked = False
        self.computed = 0  # entries this object computed and stored (the rest were read back)

    @classmethod
    def for_teacher(cls, root: Path, teacher: DenseTeacher) -> "FeatureCache":
        """The cache of ``teacher``'s current settings under ``root``."""
        return cls(root, teacher.identity())

    def path_for(self, key: str) -> Path:
        """File holding the features of the image with key ``key``."""
        return self.folder / f"{key}.pt"

    def _ensure_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        sidecar = self.folder / "config.json"
        text = json.dumps(
            {"teacher_key": self.teacher_key, "teacher_identity": self.teacher_identity}, indent=2, sort_keys=True
        )
        try:
            if sidecar.read_text() == text:
                return
        except (OSError, UnicodeDecodeError):
            pass
        _atomic_write(sidecar, lambda tmp: tmp.write_text(text))

    def _not_writable(self, error: OSError, stored: int) -> CacheNotWritableError:
        kept = f" The {stored} entries stored before the failure stay valid and are reused." if stored else ""
        return CacheNotWritableError(
            f"Cannot write the teacher-feature cache {self.folder} ({type(error).__name__}: {error}). By default it "
            "lives in the scene folder (<data>/laser_cache), which may be read-only. Point "
            "--pipeline.datamanager.cache-dir at a writable folder, e.g. --pipeline.datamanager.cache-dir "
            f"~/.cache/laser_ns.{kept}"
        )

    def writable(self) -> bool:
        """Whether entries can be stored (without raising)."""
        try:
            self.check_writable()
        except CacheNotWritableError:
            return False
        return True

    def check_writable(self) -> None:
        """Raise :class:`CacheNotWritableError` unless entries can be stored; called before any teacher work."""
        try:
            self._ensure_folder()
            probe = write_probe(self.folder)  # ranks of a multi-GPU run may probe the folder at the same time
            _atomic_write(probe, lambda tmp: tmp.write_bytes(b""))
            probe.unlink()
        except OSError as error:
            raise self._not_writable(error, stored=0) from error

    def load(self, key: str, expected_shape: tuple[int, int, int] | None = None) -> Tensor | None:
        """Features stored for ``key`` (fp16, CPU), or None if absent, unreadable or not matching (logged)."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        reason = None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated zip, garbage bytes, pickle refusing an unknown type...
            payload = None
            reason = f"cannot be read ({type(error).__name__}: {error})"
        if reason is None:
            features = payload.get("features") if isinstance(payload, dict) else None
            if not isinstance(payload, dict) or payload.get("format") != _FILE_FORMAT:
                reason = "has an unknown layout"
            elif payload.get("teacher_key") != self.teacher_key or payload.get("image_key") != key:
                reason = "was stored for another teacher or image"
            elif not isinstance(features, Tensor) or features.dtype != torch.float16 or features.ndim != 3:
                reason = "does not hold an fp16 [h, w, D] tensor"
            elif expected_shape is not None and tuple(features.shape) != tuple(expected_shape):
                reason = f"holds shape {tuple(features.shape)}, expected {tuple(expected_shape)}"
            elif not torch.isfinite(features).all():
                reason = "holds non-finite values"
        if reason is not None:
            logger.warning("Feature cache file %s %s; recomputing it.", path, reason)
            return None
        return features

    def save(self, key: str, features: Float[Tensor, "h w D"]) -> Tensor:
        """Store ``features`` for ``key`` as fp16 (atomically) and return the stored fp16 CPU tensor."""
        self._ensure_folder()
        stored = stored_form(features)
        payload = {"format": _FILE_FORMAT, "teacher_key": self.teacher_key, "image_key": key, "features": stored}
        _atomic_write(self.path_for(key), lambda tmp: torch.save(payload, tmp))
        return stored

    def features_for_image(
        self,
        teacher: DenseTeacher,
        image: Float[Tensor, "H W 3"],
        labels: Int[Tensor, "H W"] | None = None,
        store: bool = True,
    ) -> Float[Tensor, "h w D"]:
        """Dense features of one image (fp16, CPU): read from the cache, or computed and stored (``store=False``: a
        reader of a cache it may not write, such as ``laser-eval --score-teacher``, computes without storing).

        The one entry point that runs the teacher: on the first miss it checks that the cache can be written before
        the teacher runs (so a read-only scene folder fails at once, naming ``--pipeline.datamanager.cache-dir``),
        and a write failing later names how many entries were stored and stay valid.
        """
        if teacher.identity() != self.teacher_identity:
            raise ValueError(
                "This FeatureCache was made for another teacher identity; use FeatureCache.for_teacher(root, teacher)."
            )
        key = image_key(image, labels)
        cached = self.load(key, (*teacher.grid_size(image.shape[0], image.shape[1]), teacher.feature_dim))
        if cached is not None:
            return cached
        if not store:
            return stored_form(teacher.dense_features(image, labels))
        if not self._writable_checked:
            # fail before the teacher runs, so no computed feature is thrown away; a fully cached scene never writes
            self.check_writable()
            self._writable_checked = True
        features = teacher.dense_features(image, labels)
        try:
            stored = self.save(key, features)
        except OSError as error:  # e.g. the disk filled up or the folder turned read-only mid-run
            raise self._not_writable(error, self.computed) from error
        self.computed += 1
        return stored

    def features_for_images(
        self,
        teacher: DenseTeacher,
        images: Sequence[Float[Tensor, "H W 3"]],
        labels: Sequence[Int[Tensor, "H W"] | None] | None = None,
        desc: str = "Teacher features",
    ) -> list[Float[Tensor, "h w D"]]:
        """Dense features of each image (fp16, CPU) through :meth:`features_for_image`, with a progress bar.

        ``labels[i]`` is image i's label map (or None); it is part of the key. Values are identical whether an entry
        was just computed or read back, since both are the stored fp16 tensor.
        """
        labels = [None] * len(images) if labels is None else list(labels)
        if len(labels) != len(images):
            raise ValueError(f"Got {len(images)} images but {len(labels)} label maps; pass one (or None) per image.")
        pairs = list(zip(images, labels, strict=True))
        return [self.features_for_image(teacher, image, label) for image, label in tqdm(pairs, desc=desc, unit="image")]


def dense_features_for_images(
    teacher: DenseTeacher,
    images: Sequence[Float[Tensor, "H W 3"]],
    labels: Sequence[Int[Tensor, "H W"] | None] | None = None,
    cache_root: Path | None = None,
    desc: str = "Teacher features",
) -> list[Float[Tensor, "h w D"]]:
    """Features of each image (fp16, CPU), cached under ``cache_root`` when given, else computed every time."""
    if cache_root is not None:
        return FeatureCache.for_teacher(cache_root, teacher).features_for_images(teacher, images, labels, desc)
    labels = [None] * len(images) if labels is None else list(labels)
    return [
        stored_form(teacher.dense_features(image, label))
        for image, label in tqdm(list(zip(images, labels, strict=True)), desc=desc, unit="image")
    ]

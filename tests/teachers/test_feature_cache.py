"""FeatureCache: hits, invalidation, corrupt entries, fp16 storage, atomic writes."""

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from laser_ns.teachers import cache as cache_module
from laser_ns.teachers.base import DenseTeacher
from laser_ns.teachers.cache import CacheNotWritableError, FeatureCache, dense_features_for_images, image_key


class CountingTeacher(DenseTeacher):
    """Cheap deterministic teacher that counts how often it really computes."""

    feature_dim = 8

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.calls = 0

    def identity(self) -> dict[str, Any]:
        return {"teacher": "counting", "scale": self.scale}

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return F.normalize(torch.ones(len(prompts), self.feature_dim), dim=-1)

    def dense_features(self, image: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        h, w = self.grid_size(image.shape[0], image.shape[1])
        tiles = image[: h * 16, : w * 16].reshape(h, 16, w, 16, 3).mean(dim=(1, 3))  # [h, w, 3]
        extra = 0.0 if labels is None else float(labels.float().mean())
        features = torch.cat([tiles * self.scale, torch.full((h, w, 5), 0.1 + extra)], dim=-1)
        return F.normalize(features, dim=-1)


def _images(count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(32, 48, 3, generator=generator) for _ in range(count)]


def _entry_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.pt"))


def test_second_call_is_a_hit(tmp_path):
    teacher = CountingTeacher()
    cache = FeatureCache.for_teacher(tmp_path, teacher)
    images = _images()
    first = cache.features_for_images(teacher, images)
    assert teacher.calls == 3
    second = FeatureCache.for_teacher(tmp_path, teacher).features_for_images(teacher, images)
    assert teacher.calls == 3
    for a, b, image in zip(first, second, images, strict=True):
        assert a.dtype == torch.float16 and a.shape == (2, 3, 8)
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        torch.testing.assert_close(a.float(), teacher.dense_features(image), atol=1e-3, rtol=0)


def test_stored_as_fp16_with_readable_sidecar(tmp_path):
    teacher = CountingTeacher()
    cache = FeatureCache.for_teacher(tmp_path, teacher)
    cache.features_for_images(teacher, _images(1))
    (path,) = _entry_files(cache.folder)
    payload = torch.load(path, weights_only=True)
    assert payload["features"].dtype == torch.float16
    sidecar = json.loads((cache.folder / "config.json").read_text())
    assert sidecar["teacher_identity"] == teacher.identity()
    assert not list(cache.folder.glob("*.tmp"))


def test_changed_image_recomputes_only_that_image(tmp_path):
    teacher = CountingTeacher()
    cache = FeatureCache.for_teacher(tmp_path, teacher)
    images = _images()
    cache.features_for_images(teacher, images)
    images[1] = images[1].clone()
    images[1][0, 0, 0] += 0.5
    teacher.calls = 0
    cache.features_for_images(teacher, images)
    assert teacher.calls == 1
    assert len(_entry_files(cache.folder)) == 4  # the old entry is kept


def test_labels_are_part_of_the_key(tmp_path):
    teacher = CountingTeacher()
    cache = FeatureCache.for_teacher(tmp_path, teacher)
    images = _images(1)
    labels = torch.zeros(32, 48, dtype=torch.uint8)
    plain = cache.features_for_images(teacher, images)
    labelled = cache.features_for_images(teacher, images, [labels])
    other = cache.features_for_images(teacher, images, [labels + 1])
    assert teacher.calls == 3
    assert (plain[0].float() - other[0].float()).abs().max() > 0
    assert image_key(images[0], labels) != image_key(images[0])
    cache.features_for_images(teacher, images, [labels])
    assert teacher.calls == 3
    torch.testing.assert_close(labelled[0], cache.features_for_images(teacher, images, [labels])[0])


def test_changed_identity_uses_a_new_folder(tmp_path):
    images = _images(2)
    teacher = CountingTeacher(scale=1.0)
    old = FeatureCache.for_teacher(tmp_path, teacher)
    old.features_for_images(teacher, images)
    changed = CountingTeacher(scale=2.0)
    new = FeatureCache.for_teacher(tmp_path, changed)
    assert new.folder != old.folder
    new.features_for_images(changed, images)
    assert changed.calls == 2
    assert len(_entry_files(old.folder)) == 2  # untouched


def test_cache_for_other_identity_is_refused(tmp_path):
    cache = FeatureCache.for_teacher(tmp_path, CountingTeacher(scale=1.0))
    with pytest.raises(ValueError, match="another teacher identity"):
        cache.features_for_images(CountingTeacher(scale=3.0), _images(1))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_file_is_rebuilt_with_one_warning(tmp_path, caplog, damage):
    teacher = CountingTeacher()
    cache = FeatureCache.for_teacher(tmp_path, teacher)
    images = _images(2)
    good = cache.features_for_images(teacher, images)
    path = cache.path_for(image_key(images[0]))
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\x00garbage\xff" * 10, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    teacher.calls = 0
    with caplog.at_level(logging.WARNING, logger="laser_ns.teachers.cache"):
        again = cache.features_for_images(teacher, images)
    assert teacher.calls == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    torch.testing.assert_close(again[0], good[0])
    assert torch.load(path, weights_only=True)["features"].dtype == torch.float16  # repaired on disk


def test_mismatched_entries_are_not_trusted(tmp_path, caplog):
    teacher = CountingTeacher()
    cache = FeatureCache.for_teacher(tmp_path, teacher)
    images = _images(2)
    good = cache.features_for_images(teacher, images)
    # Image 0's file copied onto image 1's name: valid torch file, wrong stored key.
    cache.path_for(image_key(images[1])).write_bytes(cache.path_for(image_key(images[0])).read_bytes())
    # Image 0's file rewritten with the right keys but a wrong shape.
    payload = torch.load(cache.path_for(image_key(images[0])), weights_only=True)
    payload["features"] = payload["features"][:1]
    torch.save(payload, cache.path_for(image_key(images[0])))
    teacher.calls = 0
    with caplog.at_level(logging.WARNING, logger="laser_ns.teachers.cache"):
        again = cache.features_for_images(teacher, images)
    assert teacher.calls == 2
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "another teacher or image" in messages and "expected (2, 3, 8)" in messages
    for a, b in zip(again, good, strict=True):
        torch.testing.assert_close(a, b)


def test_uncached_helper_computes_every_time(tmp_path):
    teacher = CountingTeacher()
    images = _images(2)
    first = dense_features_for_images(teacher, images)
    dense_features_for_images(teacher, images)
    assert teacher.calls == 4
    assert first[0].dtype == torch.float16
    cached = dense_features_for_images(teacher, images, cache_root=tmp_path)
    dense_features_for_images(teacher, images, cache_root=tmp_path)
    assert teacher.calls == 6
    torch.testing.assert_close(cached[1], first[1])


def test_mismatched_label_count_is_an_error(tmp_path):
    teacher = CountingTeacher()
    with pytest.raises(ValueError, match="2 images but 1 label maps"):
        FeatureCache.for_teacher(tmp_path, teacher).features_for_images(teacher, _images(2), [None])


def test_cache_under_a_file_fails_before_the_teacher_runs(tmp_path):
    # tests run as root, where a chmod'ed folder stays writable: a regular file in the path fails for root too
    blocker = tmp_path / "scene_is_a_file"
    blocker.write_text("")
    teacher = CountingTeacher()
    cache = FeatureCache.for_teacher(blocker / "laser_cache", teacher)
    with pytest.raises(CacheNotWritableError, match="--pipeline.datamanager.cache-dir") as err:
        cache.features_for_images(teacher, _images())
    assert str(cache.folder) in str(err.value)
    assert teacher.calls == 0  # nothing was computed, so nothing is lost


def test_two_processes_probing_one_folder_at_once_both_pass(tmp_path, monkeypatch):
    # The ranks of a multi-GPU run share the cache folder and check it at the same moment. Interleave two checks: the
    # second runs whole between the first's probe write and its removal. A probe name shared by both let the second
    # remove the first's probe, failing the first rank with "cannot write" (a CI failure of test_distributed.py).
    teacher = CountingTeacher()
    first, second = FeatureCache.for_teacher(tmp_path, teacher), FeatureCache.for_teacher(tmp_path, teacher)
    original = cache_module._atomic_write
    interleaved = []

    def write_then_let_the_other_rank_check(path: Path, write: Any) -> None:
        original(path, write)
        if path.name.startswith(".laser_ns_write_test") and not interleaved:
            interleaved.append(path)
            second.check_writable()

    monkeypatch.setattr(cache_module, "_atomic_write", write_then_let_the_other_rank_check)
    first.check_writable()
    assert interleaved, "the probe was not written through _atomic_write"
    assert not list(first.folder.glob(".laser_ns_write_test*")), "a probe was left behind"


def _read_only(monkeypatch) -> None:
    """Every write into the cache fails as in a read-only folder (a chmod would not stop root, who runs the tests)."""

    def refuse(path: Path, write: Any) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cache_module, "_atomic_write", refuse)


def test_read_only_cache_names_the_option_before_any_work(tmp_path, monkeypatch):
    _read_only(monkeypatch)
    teacher = CountingTeacher()
    with pytest.raises(CacheNotWritableError, match=r"PermissionError.*--pipeline.datamanager.cache-dir"):
        FeatureCache.for_teacher(tmp_path, teacher).features_for_images(teacher, _images())
    assert teacher.calls == 0


def test_fully_cached_read_only_scene_trains(tmp_path, monkeypatch):
    teacher = CountingTeacher()
    first = FeatureCache.for_teacher(tmp_path, teacher).features_for_images(teacher, _images())
    _read_only(monkeypatch)
    second = FeatureCache.for_teacher(tmp_path, teacher).features_for_images(teacher, _images())
    assert teacher.calls == 3
    torch.testing.assert_close(first, second, atol=0, rtol=0)


def test_write_failing_mid_run_keeps_what_was_stored(tmp_path, monkeypatch):
    teacher = CountingTeacher()
    real_save = FeatureCache.save
    saves = []

    def disk_full_on_second(self, key, features):
        saves.append(key)
        if len(saves) == 2:
            raise OSError(28, "No space left on device")
        return real_save(self, key, features)

    monkeypatch.setattr(FeatureCache, "save", disk_full_on_second)
    with pytest.raises(CacheNotWritableError, match="The 1 entries stored before the failure stay valid"):
        FeatureCache.for_teacher(tmp_path, teacher).features_for_images(teacher, _images())
    monkeypatch.setattr(FeatureCache, "save", real_save)
    FeatureCache.for_teacher(tmp_path, teacher).features_for_images(teacher, _images())
    assert teacher.calls == 2 + 2  # the stored first image was not computed again


def test_training_on_a_read_only_scene_names_the_option_before_the_teacher_runs(tiny_scene, monkeypatch):
    # issue 18: training's own cache path (the datamanager) used to write without the check and fail with a raw
    # OSError after the teacher had run
    from laser_ns.teachers.label_map import LabelMapTeacher
    from tests.conftest import tiny_pipeline_config

    calls = []
    real = LabelMapTeacher.dense_features
    monkeypatch.setattr(LabelMapTeacher, "dense_features", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    _read_only(monkeypatch)
    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.cache_dir = tiny_scene.parent / "read_only_cache"
    with pytest.raises(CacheNotWritableError, match=r"read_only_cache.*--pipeline.datamanager.cache-dir"):
        config.setup(device="cpu", test_mode="val")
    assert calls == []

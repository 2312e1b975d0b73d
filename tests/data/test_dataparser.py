"""The dataparser: both scene formats, the split, the annotations and the errors for broken scenes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from laser_ns.data.dataparser import LaserDataParserConfig
from laser_ns.data.semantics import SceneFormatError
from laser_ns.scenes import make_scene


@pytest.fixture(scope="module")
def scene_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    make_scene(root / "llff", "tabletop", seed=0, num_views=8, width=64, height=48, annotated_views=[0, 5])
    make_scene(
        root / "ns", "tabletop", seed=0, num_views=8, width=64, height=48, annotated_views=[0, 5], fmt="nerfstudio"
    )
    return root


@pytest.fixture
def scene(scene_template, tmp_path) -> Path:
    shutil.copytree(scene_template / "llff", tmp_path / "scene")
    return tmp_path / "scene"


def parse(data: Path, split: str = "train"):
    return LaserDataParserConfig(data=data).setup().get_dataparser_outputs(split=split)


def test_llff_scene_trains_on_all_images_and_evaluates_annotated_views(scene):
    train = parse(scene, "train")
    assert len(train.image_filenames) == 8
    assert train.metadata["class_names"] == sorted(train.metadata["class_names"])
    evaluation = parse(scene, "val")
    assert evaluation.metadata["image_indices"] == [0, 5]
    assert [p.name for p in evaluation.image_filenames] == [train.image_filenames[i].name for i in (0, 5)]
    assert int(train.cameras.width[0]) == 64 and int(train.cameras.height[0]) == 48


def test_llff_cameras_look_at_the_content(scene):
    """After normalisation the mean camera looks down -z at content inside the unit box."""
    cameras = parse(scene).cameras
    forward = -cameras.camera_to_worlds[:, :, 2].mean(dim=0)
    assert torch.allclose(forward / forward.norm(), torch.tensor([0.0, 0.0, -1.0]), atol=1e-3)
    centre_ray = cameras.generate_rays(camera_indices=0, coords=torch.tensor([[24.0, 32.0]]))
    # the scene centre (origin) lies in front of the camera, at a depth inside the normalised range
    depth = -(cameras.camera_to_worlds[0, :, 3]) @ centre_ray.directions[0]
    assert 0.2 < float(depth) < 4.0


def test_nerfstudio_scene_has_same_annotations(scene_template):
    train = parse(scene_template / "ns", "train")
    assert len(train.image_filenames) == 8
    assert parse(scene_template / "ns", "test").metadata["image_indices"] == [0, 5]
    assert train.metadata["class_names"] == parse(scene_template / "llff").metadata["class_names"]


def test_pose_count_mismatch_names_the_file(scene):
    poses = np.load(scene / "poses_bounds.npy")
    np.save(scene / "poses_bounds.npy", poses[:-1])
    with pytest.raises(SceneFormatError, match="poses_bounds.npy holds 7 poses but .* 8 images"):
        parse(scene)


def test_unreadable_image_names_the_file(scene):
    bad = sorted((scene / "images").iterdir())[3]
    bad.write_bytes(b"not an image")
    with pytest.raises(SceneFormatError, match=bad.name):
        parse(scene)


def test_missing_class_mask(scene):
    classes = (scene / "segmentations" / "classes.txt").read_text().split("\n")
    (scene / "segmentations" / "5" / f"{classes[0]}.png").unlink()
    with pytest.raises(SceneFormatError, match=f"no mask for class '{classes[0]}'"):
        parse(scene)


def test_mask_of_wrong_size(scene):
    mask = next((scene / "segmentations" / "0").glob("*.png"))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask)
    with pytest.raises(SceneFormatError, match="Resize the mask"):
        parse(scene)


def test_empty_classes_file(scene):
    (scene / "segmentations" / "classes.txt").write_text("\n \n")
    with pytest.raises(SceneFormatError, match="classes.txt is empty"):
        parse(scene)


def test_label_names_must_agree_with_classes(scene):
    names = json.loads((scene / "labels" / "names.json").read_text())
    names[0] = "something else"
    (scene / "labels" / "names.json").write_text(json.dumps(names))
    with pytest.raises(SceneFormatError, match="differ from"):
        parse(scene)


def test_missing_scene_folder(tmp_path):
    with pytest.raises(SceneFormatError, match="does not exist"):
        parse(tmp_path / "nope")
    with pytest.raises(SceneFormatError, match="neither poses_bounds.npy"):
        parse(tmp_path)


def test_llff_image_of_another_size_names_the_file(scene):
    odd = sorted((scene / "images").iterdir())[4]
    Image.open(odd).resize((32, 24)).save(odd)
    with pytest.raises(SceneFormatError, match=rf"{odd.name} is 32x24 pixels, but most images .* are 64x48") as err:
        parse(scene)
    assert str(odd) in str(err.value) and "Resize them to 64x48" in str(err.value)


def test_nerfstudio_image_of_another_size_names_the_file(scene_template, tmp_path):
    # before, nerfstudio loaded the scene and training died in torch.stack with no file named
    scene = shutil.copytree(scene_template / "ns", tmp_path / "ns")
    frames = json.loads((scene / "transforms.json").read_text())["frames"]
    odd = scene / frames[2]["file_path"]
    Image.open(odd).resize((50, 40)).save(odd)
    with pytest.raises(SceneFormatError, match=r"is 50x40 pixels, but .*transforms.json gives its camera 64x48") as err:
        parse(scene)
    assert str(odd) in str(err.value) and "Resize the image to 64x48" in str(err.value)


def test_missing_scene_folder_names_the_saved_config_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SceneFormatError, match=r"relative to the current folder .*pipeline.datamanager.data"):
        parse(Path("moved_scene"))


def test_train_and_eval_splits_come_from_one_read_of_the_scene(scene, monkeypatch):
    """nerfstudio's datamanager asks one parser for the train split, then the eval split: the scene is read once."""
    import laser_ns.data.dataparser as dataparser_module

    reads = []
    real = dataparser_module.load_semantics
    monkeypatch.setattr(dataparser_module, "load_semantics", lambda *a, **k: reads.append(a) or real(*a, **k))
    parser = LaserDataParserConfig(data=scene).setup()
    train = parser.get_dataparser_outputs(split="train")
    evaluation = parser.get_dataparser_outputs(split="test")
    assert len(reads) == 1
    assert len(train.image_filenames) == 8 and evaluation.metadata["image_indices"] == [0, 5]
    # A changed setting is a different scene: it is read again.
    parser.config.scene_scale = 2.0
    parser.get_dataparser_outputs(split="train")
    assert len(reads) == 2

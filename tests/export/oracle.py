"""A stand-in for a trained laser pipeline that renders the generated scene's exact geometry and labels.

It lets the export and localisation code be checked against ground truth without the cost (and the noise) of
training a radiance field: depth comes from the generator's own ray caster, classes from the primitive hit, and a
chosen fraction of rays are "floaters" (a point at a random depth in front of the surface, with the surface's class)
so that the floater removal has something to remove.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import torch

from laser_ns.export.frames import SceneFrames
from laser_ns.scenes import cast_rays


class OracleModel:
    """Implements the parts of LaserModel (and of its predictor) that the exporter and the viewer's box button use."""

    def __init__(self, spec, frames: SceneFrames, floater_fraction: float = 0.0, seed: int = 0) -> None:
        self.spec = spec
        self.frames = frames
        self.class_names = list(spec.class_names)
        self.labels = spec.primitive_labels()
        self.queries: list[str] = list(self.class_names)
        self.query_mode = "relevancy"
        self.predictor = self  # a LaserModel's queries live in model.predictor; the oracle answers them itself
        self.composite_threshold = 0.5
        self.training = False
        self.floater_fraction = floater_fraction
        self.generator = np.random.default_rng(seed)
        self.config = SimpleNamespace(eval_num_rays_per_chunk=2048)
        self.device = torch.device("cpu")
        self.calls = 0

    # the hooks the exporter drives
    def eval(self):
        self.training = False
        return self

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def set_queries(self, queries: Sequence[str]) -> None:
        self.queries = list(queries)

    def segmentation_classes(self) -> tuple[list[str], None]:
        extra = [q for q in self.queries if q not in self.class_names] if self.query_mode == "segmentation" else []
        return self.class_names + extra, None

    def segmentation_legend(self) -> list[tuple[str, tuple[int, int, int]]]:
        return [(name, (10 * k, 100, 200)) for k, name in enumerate(self.segmentation_classes()[0])]

    def get_rgba_image(self, outputs: dict[str, torch.Tensor], output_name: str = "rgb") -> torch.Tensor:
        rgb = outputs[output_name]
        return torch.cat([rgb, torch.ones_like(rgb[..., :1])], dim=-1)  # nerfacto's 'last_sample' background

    def __call__(self, ray_bundle) -> dict[str, torch.Tensor]:
        self.calls += 1
        origins = ray_bundle.origins.double().numpy()
        directions = ray_bundle.directions.double().numpy()
        o = self.frames.to_original(origins)
        d = self.frames.directions_to_original(directions)
        hits = cast_rays(self.spec.primitives, o, d)
        hit = hits.index >= 0
        depth = np.where(hit, hits.t, 1.0) * self.frames.scale  # original units -> dataparser units
        floaters = self.generator.random(len(depth)) < self.floater_fraction
        depth = np.where(floaters, depth * self.generator.uniform(0.3, 0.9, len(depth)), depth)
        classes = np.where(hit, self.labels[np.maximum(hits.index, 0)], 0)
        num_rays = len(depth)
        outputs = {
            "rgb": torch.full((num_rays, 3), 0.5),
            "depth": torch.from_numpy(depth).float()[:, None],
            "accumulation": torch.from_numpy(hit.astype(np.float32))[:, None],
            "segmentation_class": torch.from_numpy(classes).float()[:, None],
        }
        for i, query in enumerate(self.queries):
            known = query in self.class_names
            relevant = classes == self.class_names.index(query) if known else np.zeros(num_rays, bool)
            outputs[f"relevancy_{i}"] = torch.from_numpy(np.where(relevant, 0.9, 0.3)).float()[:, None]
        return outputs


def oracle_pipeline(scene_dir, spec, floater_fraction: float = 0.0):
    """A pipeline-shaped object: the scene's real dataparser cameras and frames, and an OracleModel."""
    from laser_ns.data.dataparser import LaserDataParserConfig

    outputs = LaserDataParserConfig(data=scene_dir).setup().get_dataparser_outputs(split="train")
    frames = SceneFrames(outputs.dataparser_transform.double().numpy(), float(outputs.dataparser_scale), "oracle")
    model = OracleModel(spec, frames, floater_fraction)
    dataset = SimpleNamespace(cameras=outputs.cameras)
    return SimpleNamespace(model=model, datamanager=SimpleNamespace(train_dataset=dataset))

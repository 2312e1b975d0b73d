"""Ablation of Laser's parts on a generated scene with the label-map teacher.

    python benchmarks/ablation.py --steps 1000 --preset tabletop --output benchmarks/ablation.json

Trains laser-lite once with every part on and once with each part off (same steps, same seed, same scene),
then scores closed-set mIoU / accuracy on the annotated views. The teacher is degraded like dense CLIP:
16-pixel tiles, boundary mixing and view-inconsistent label noise.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro

VARIANTS: dict[str, dict[str, bool]] = {
    "all parts": {},
    "no adapter": {"use_adapter": False},
    "no self-cross": {"use_self_cross": False},
    "no transient attention": {"use_transient_attention": False},
    "no label volume": {"use_label_volume": False},
    "no text augmentation": {"use_text_augmentation": False},
    "none (plain distillation)": {
        "use_adapter": False,
        "use_transient_attention": False,
        "use_label_volume": False,
        "use_text_augmentation": False,
    },
}


@dataclass
class Ablation:
    """Train laser-lite with each part switched off in turn and compare closed-set mIoU."""

    output: Path = Path("benchmarks/ablation.json")
    """JSON file with every variant's metrics."""
    workdir: Path = Path("/tmp/laser_ablation")
    """Scene and training runs go here."""
    preset: str = "tabletop"
    """Generated scene."""
    steps: int = 1000
    """Training steps per variant."""
    seed: int = 0
    """Scene and training seed."""
    label_noise: float = 0.1
    """Teacher degradation: fraction of tiles given a random class (per view)."""
    boundary_mixing: float = 0.3
    """Teacher degradation: blend of each tile with its 3x3 neighbourhood."""
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    """Which variants to run."""

    def main(self) -> None:
        from laser_ns.data.synthetic import make_scene

        scene = self.workdir / "scene"
        make_scene(scene, self.preset, seed=self.seed)
        results = {name: self.run(scene, name, VARIANTS[name]) for name in self.variants}
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text(json.dumps({"settings": self._settings(), "results": results}, indent=2))
        print("\n| variant | mIoU | accuracy | train s |\n|---|---|---|---|")
        for name, r in results.items():
            print(f"| {name} | {100 * r['miou']:.1f} | {100 * r['accuracy']:.1f} | {r['train_seconds']:.0f} |")

    def _settings(self) -> dict:
        return {k: str(v) for k, v in vars(self).items()}

    def run(self, scene: Path, name: str, switches: dict[str, bool]) -> dict:
        from laser_ns.eval.evaluate import evaluate_pipeline
        from laser_ns.method_configs import laser_lite_config

        torch.manual_seed(self.seed)
        config = copy.deepcopy(laser_lite_config())
        config.max_num_iterations = self.steps
        config.vis = "tensorboard"
        config.output_dir = self.workdir / "runs"
        config.experiment_name = name.replace(" ", "_").replace("(", "").replace(")", "")
        config.timestamp = "ablation"
        config.steps_per_eval_image = config.steps_per_eval_all_images = config.steps_per_eval_batch = 10**9
        config.steps_per_save = 10**9
        config.pipeline.datamanager.data = scene
        config.pipeline.teacher_type = "labels"
        teacher = config.pipeline.label_teacher
        teacher.text_encoder = "hashed"
        teacher.label_noise = self.label_noise
        teacher.boundary_mixing = self.boundary_mixing
        teacher.seed = self.seed
        for key, value in switches.items():
            setattr(config.pipeline.model, key, value)
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        result = evaluate_pipeline(trainer.pipeline, self.workdir / "eval" / config.experiment_name)
        result["train_seconds"] = seconds
        print(f"{name}: mIoU {100 * result['miou']:.1f} accuracy {100 * result['accuracy']:.1f} ({seconds:.0f} s)")
        return result


if __name__ == "__main__":
    tyro.cli(Ablation).main()

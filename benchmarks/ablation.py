"""Ablation of Laser's parts on one generated scene with the label-map teacher: a shortcut to the quality benchmark.

    python benchmarks/ablation.py --steps 1000 --preset tabletop --output benchmarks/ablation.json

Trains laser-lite once with every part on and once with each part off (same steps, same seed, same scene) and
scores each run like ``benchmarks/quality.py`` does (which now holds the variants and the scoring): 3D mIoU and
accuracy on the annotated views, boundary mIoU and cross-view consistency, next to the teacher's own 2D scores. The
teacher is degraded like dense CLIP: 16-pixel tiles, boundary mixing and view-inconsistent label noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tyro
from quality import VARIANTS, QualityBenchmark


@dataclass
class Ablation:
    """Train laser-lite with each part switched off in turn and compare it with the teacher."""

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
    threads: int = 1
    """torch CPU threads."""

    def main(self) -> None:
        QualityBenchmark(
            output=self.output,
            workdir=self.workdir,
            scenes=[self.preset],
            variants=self.variants,
            steps=self.steps,
            seed=self.seed,
            label_noise=self.label_noise,
            boundary_mixing=self.boundary_mixing,
            threads=self.threads,
        ).main()


if __name__ == "__main__":
    tyro.cli(Ablation).main()

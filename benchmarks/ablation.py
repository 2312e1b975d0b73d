"""Ablation of Laser's parts on one generated scene with the label-map teacher: a shortcut to the quality benchmark.

    python benchmarks/ablation.py --steps 1000 --scenes tabletop --output benchmarks/ablation.json

Trains laser-lite once with every part on and once with each part off (same steps, same seed, same scene) and
scores each run like ``benchmarks/quality.py`` does (which holds the variants and the scoring): 3D mIoU and
accuracy on the annotated views, boundary mIoU and cross-view consistency, next to the teacher's own 2D scores. The
teacher is degraded like dense CLIP: 16-pixel tiles, boundary mixing and view-inconsistent label noise. Every
option of quality.py is accepted; only the defaults differ (one scene, every variant).
"""

from __future__ import annotations

from pathlib import Path

import tyro
from quality import VARIANTS, QualityBenchmark

if __name__ == "__main__":
    defaults = QualityBenchmark(
        output=Path("benchmarks/ablation.json"),
        workdir=Path("/tmp/laser_ablation"),
        scenes=["tabletop"],
        variants=list(VARIANTS),
    )
    tyro.cli(QualityBenchmark, default=defaults).main()

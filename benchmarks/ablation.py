"""Ablation of Laser's parts on one generated scene with the CLIP-like teacher: a shortcut to the quality benchmark.

    python benchmarks/ablation.py --steps 1000 --scenes tabletop --output benchmarks/ablation.json

Trains laser-lite once per variant of ``benchmarks/quality.py`` (its defaults, every part on, each part off, the
paper's model; same steps, seed and scene) and scores each run as quality.py does: 3D mIoU and accuracy on the
annotated views by 3D-OVS's rules, boundary mIoU and cross-view consistency, next to the teacher's own 2D scores.
Every option of quality.py is accepted; only the defaults differ (one scene, every variant).
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

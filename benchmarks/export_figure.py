"""The README's picture of a laser-export result, rendered headless with matplotlib (Agg).

    python benchmarks/export_figure.py --export-dir export/ --output docs/export.png

Left: the scene cloud coloured by its ``class`` property (legend from legend.json). Right: the extracted objects
(objects/*.ply) in their rendered colours. open3d's OffscreenRenderer needs EGL/Vulkan, which this machine lacks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro


@dataclass
class ExportFigure:
    """Render an export folder to a PNG."""

    export_dir: Path
    """Output folder of laser-export (point_cloud.ply, legend.json, objects/)."""
    output: Path = Path("docs/export.png")
    """PNG to write."""
    elevation: float = 25.0
    """Camera elevation in degrees."""
    azimuth: float = -90.0
    """Camera azimuth in degrees."""
    max_points: int = 30000
    """Points drawn per panel (subsampled)."""
    crop: float = 1.0
    """Draw only points with every dataparser coordinate within +-crop (the scene box; hides far floaters)."""

    def main(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        from laser_ns.export.ply import read_ply

        legend = json.loads((self.export_dir / "legend.json").read_text())
        scene = self._cropped(read_ply(self.export_dir / legend["ply"]))
        colors = np.array([c["color"] for c in legend["classes"]]) / 255.0
        rng = np.random.default_rng(0)
        fig = plt.figure(figsize=(9, 4), dpi=90)
        ax = fig.add_subplot(1, 2, 1, projection="3d")
        keep = rng.permutation(len(scene))[: self.max_points]
        self._scatter(ax, scene[keep], colors[scene["class"][keep]])
        ax.set_title("point_cloud.ply, coloured by class", fontsize=9)
        present = sorted(set(scene["class"].tolist()))
        handles = [Patch(color=colors[k], label=legend["classes"][k]["name"]) for k in present]
        ax.legend(handles=handles, fontsize=7, loc="lower left", frameon=False)
        ax = fig.add_subplot(1, 2, 2, projection="3d")
        objects = [read_ply(self.export_dir / entry["ply"]) for entry in legend["objects"]]
        allpoints = self._cropped(np.concatenate(objects))
        keep = rng.permutation(len(allpoints))[: self.max_points]
        rgb = np.stack([allpoints["red"], allpoints["green"], allpoints["blue"]], axis=1)[keep] / 255.0
        self._scatter(ax, allpoints[keep], rgb)
        ax.set_title("objects/*.ply: " + ", ".join(e["query"] for e in legend["objects"]), fontsize=9)
        fig.tight_layout()
        self.output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.output, dpi=90)
        print(f"wrote {self.output} ({self.output.stat().st_size // 1024} KB)")

    def _cropped(self, vertices):
        xyz = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1)
        return vertices[np.all(np.abs(xyz) <= self.crop, axis=1)]

    def _scatter(self, ax, vertices, colors) -> None:
        # dataparser frame: y is up; matplotlib's 3D axes put z up, so plot (x, -z, y)
        ax.scatter(vertices["x"], -vertices["z"], vertices["y"], c=colors, s=0.6, linewidths=0, depthshade=False)
        ax.view_init(elev=self.elevation, azim=self.azimuth)
        ax.set_axis_off()
        ax.set_box_aspect([np.ptp(vertices["x"]) or 1, np.ptp(vertices["z"]) or 1, np.ptp(vertices["y"]) or 1])


if __name__ == "__main__":
    tyro.cli(ExportFigure).main()

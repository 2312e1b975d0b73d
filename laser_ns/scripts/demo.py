"""laser-demo: generate a scene, train laser-lite on it, evaluate it and render a segmented video, offline.

No CLIP weights can be assumed, so the demo trains on the simulated dense CLIP teacher (``--pipeline.teacher-type
clip-like``, laser_ns/teachers/clip_like.py): it turns the generated scene's label maps into tile features with dense
CLIP's modality gap, colour bias, blur and view-dependent mistakes, on a grid of about 50 tiles across the image
(dense CLIP's ratio on a 5x-downsampled capture). The demo prints that teacher's own 2D mIoU beside Laser's 3D mIoU.
With real weights, use ``ns-train laser --data ...``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from nerfstudio.utils.rich_utils import CONSOLE


@dataclass
class Demo:
    """Train and evaluate laser-lite on a generated tabletop scene, then write a segmented video."""

    output_dir: Path = Path("demo_output")
    """Everything goes here: scene/, runs/, eval/ and segmentation.mp4."""
    preset: str = "tabletop"
    """Which generated scene (see laser-make-scene --help)."""
    steps: int = 3000
    """Training steps (laser-lite: the first quarter trains geometry only)."""
    seed: int = 0
    """Scene seed."""
    width: int = 256
    """Image width of the generated scene."""
    height: int = 192
    """Image height of the generated scene."""
    num_views: int = 30
    """Views of the generated scene."""
    tile_size: int = 5
    """Teacher tile in pixels: 5 at 256x192 gives a 51x38 grid (dense CLIP's ratio on a 5x-downsampled capture)."""

    def main(self) -> None:
        from laser_ns.scenes import make_scene

        start = time.perf_counter()
        out = self.output_dir.resolve()
        scene = out / "scene"
        if scene.exists():
            shutil.rmtree(scene)
        info = make_scene(
            scene, self.preset, seed=self.seed, num_views=self.num_views, width=self.width, height=self.height
        )
        CONSOLE.print(f"[laser_ns] scene with classes {info.class_names} written to {scene}")

        run_dir = out / "runs"
        _run(
            [
                _tool("ns-train"), "laser-lite", "--data", str(scene),
                "--output-dir", str(run_dir), "--experiment-name", "demo", "--timestamp", "demo",
                "--max-num-iterations", str(self.steps), "--vis", "tensorboard",
                "--viewer.quit-on-train-completion", "True",
                "--pipeline.teacher-type", "clip-like", "--pipeline.clip-like-teacher.tile-size", str(self.tile_size),
                "--pipeline.clip-like-teacher.seed", str(self.seed),
                "--pipeline.datamanager.language-patch-size", str(8 * self.tile_size),
            ]
        )  # fmt: skip
        config = run_dir / "demo" / "laser-lite" / "demo" / "config.yml"
        _run(
            [
                _tool("laser-eval"), "--load-config", str(config), "--output-dir", str(out / "eval"),
                "--score-teacher",
            ]
        )  # fmt: skip
        video = out / "segmentation.mp4"
        _run(
            [
                _tool("ns-render"), "interpolate", "--load-config", str(config),
                "--rendered-output-names", "rgb", "segmentation", "--interpolation-steps", "4",
                "--pose-source", "eval", "--frame-rate", "8", "--output-path", str(video),
            ]
        )  # fmt: skip
        metrics = json.loads((out / "eval" / "metrics.json").read_text())
        minutes = (time.perf_counter() - start) / 60
        CONSOLE.rule("laser_ns demo")
        CONSOLE.print(
            f"Laser 3D: mIoU {100 * metrics['miou']:.1f}  accuracy {100 * metrics['accuracy']:.1f} "
            f"on {len(metrics['views'])} annotated views (3D-OVS protocol)"
        )
        teacher = metrics["teacher"]
        CONSOLE.print(
            f"its teacher's own 2D segmentation of the same views: mIoU {100 * teacher['miou']:.1f}  "
            f"accuracy {100 * teacher['accuracy']:.1f} (simulated dense CLIP)"
        )
        CONSOLE.print(f"segmented video: {video}")
        CONSOLE.print(f"side-by-side views (RGB | prediction | ground truth): {out / 'eval'}")
        CONSOLE.print(f"open it in the viewer: ns-viewer --load-config {config}")
        CONSOLE.print(f"total time {minutes:.1f} min")


def _tool(name: str) -> str:
    """A console script of this environment (next to the running Python), so a venv need not be activated."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH; install laser_ns first.")
    return found


def _run(command: list[str]) -> None:
    CONSOLE.print("[bold]$ " + " ".join(command))
    # the environment's bin folder first, so tools find its ffmpeg even when the venv is not activated
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise SystemExit(f"'{Path(command[0]).name}' failed with exit code {result.returncode}; see its output above.")


def entrypoint() -> None:
    tyro.cli(Demo).main()


if __name__ == "__main__":
    entrypoint()

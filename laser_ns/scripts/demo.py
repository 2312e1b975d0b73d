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
from typing import Literal

import tyro
from nerfstudio.utils.rich_utils import CONSOLE

QUALITIES: dict[str, dict[str, float]] = {
    "quick": {"width": 160, "height": 120, "tile_size": 4, "steps": 1600, "language_start_fraction": 0.4},
    "full": {"width": 256, "height": 192, "tile_size": 5, "steps": 3000, "language_start_fraction": 0.25},
}
"""The demo's two settings. The quick one is the quality benchmark's scene and teacher, with 1600 steps of which
the first 40% train geometry: on its tabletop, against laser-lite's 2000 steps with 25% geometry, mIoU 73.3 vs
74.8 and RGB PSNR 25.7 vs 22.2 dB, in three quarters of the training time (benchmarks/RESULTS.md, 'Demo')."""

QUICK_MINUTES = 7
"""The quick demo's minutes on this project's 2-core CPU machine, setup excluded, rounded up: 6.4 measured from a
fresh clone with nothing else running (benchmarks/RESULTS.md, 'Demo')."""


@dataclass
class Demo:
    """Train and evaluate laser-lite on a generated tabletop scene, then write a segmented video."""

    output_dir: Path = Path("demo_output")
    """Everything goes here: scene/, runs/, eval/ and segmentation.mp4."""
    quality: Literal["quick", "full"] = "quick"
    """'quick': a 160x120 scene, 1600 steps (minutes on a 2-core CPU, see QUICK_MINUTES); 'full': 256x192, 3000
    steps, sharper edges (several times longer on a CPU; minutes on a GPU)."""
    preset: str = "tabletop"
    """Which generated scene (see laser-make-scene --help)."""
    steps: int | None = None
    """Training steps (the quality's fraction of them trains geometry only); default: the quality's."""
    seed: int = 0
    """Scene seed."""
    num_views: int = 30
    """Views of the generated scene."""

    def settings(self) -> dict[str, float]:
        """Image size, teacher tile and steps of the chosen quality (tiles: dense CLIP's ratio on a 5x-downsampled
        capture, about 40 to 50 tiles across)."""
        chosen = dict(QUALITIES[self.quality])
        if self.steps is not None:
            if self.steps < 100:
                raise SystemExit(f"laser-demo: --steps {self.steps} is too few to learn geometry; use 1000 or more.")
            chosen["steps"] = self.steps
        return chosen

    def main(self) -> None:
        from laser_ns.scenes import make_scene

        settings = self.settings()
        start = time.perf_counter()
        out = self.output_dir.resolve()
        expected = QUICK_MINUTES if self.quality == "quick" and self.steps is None else None
        CONSOLE.rule("laser_ns demo")
        CONSOLE.print(
            f"[laser_ns] {self.quality} demo: a {settings['width']}x{settings['height']} '{self.preset}' scene, "
            f"{settings['steps']} steps of laser-lite on the simulated dense CLIP teacher, then evaluation and a "
            "segmented video"
            + (f"; about {expected} minutes on a 2-core CPU" if expected else "")
            + f". Outputs go to {out}"
        )
        scene = out / "scene"
        if scene.exists():
            shutil.rmtree(scene)
        info = make_scene(
            scene, self.preset, seed=self.seed, num_views=self.num_views, width=settings["width"],
            height=settings["height"],
        )  # fmt: skip
        CONSOLE.print(f"[laser_ns] scene with classes {info.class_names} written to {scene}")

        run_dir = out / "runs"
        if (run_dir / "demo" / "laser-lite" / "demo").exists():
            shutil.rmtree(run_dir / "demo" / "laser-lite" / "demo")  # a fresh run, not the previous demo's checkpoints
        never = str(10 * settings["steps"])  # nerfstudio's periodic evaluations: the demo evaluates once, at the end
        seconds = {}
        seconds["training"] = _run(
            [
                _tool("ns-train"), "laser-lite", "--data", str(scene),
                "--output-dir", str(run_dir), "--experiment-name", "demo", "--timestamp", "demo",
                "--max-num-iterations", str(settings["steps"]), "--vis", "tensorboard",
                "--viewer.quit-on-train-completion", "True",
                "--steps-per-eval-batch", never, "--steps-per-eval-image", never, "--steps-per-eval-all-images", never,
                "--pipeline.teacher-type", "clip-like",
                "--pipeline.clip-like-teacher.tile-size", str(settings["tile_size"]),
                "--pipeline.clip-like-teacher.seed", str(self.seed),
                "--pipeline.model.schedule.language-start-fraction", str(settings["language_start_fraction"]),
            ]
        )  # fmt: skip
        config = run_dir / "demo" / "laser-lite" / "demo" / "config.yml"
        seconds["evaluation"] = _run(
            [
                _tool("laser-eval"), "--load-config", str(config), "--output-dir", str(out / "eval"),
                "--score-teacher",
            ]
        )  # fmt: skip
        video = out / "segmentation.mp4"
        seconds["video"] = _run(
            [
                _tool("ns-render"), "interpolate", "--load-config", str(config),
                "--rendered-output-names", "rgb", "segmentation", "--interpolation-steps", "3",
                "--pose-source", "eval", "--frame-rate", "6", "--output-path", str(video),
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
        like_for_like = metrics.get("teacher_in_run_space")
        if like_for_like is not None:
            CONSOLE.print(
                f"the same tiles scored the way Laser scores its features (centred): mIoU "
                f"{100 * like_for_like['miou']:.1f}  accuracy {100 * like_for_like['accuracy']:.1f}"
            )
        CONSOLE.print("colours: " + legend_markup(metrics["class_names"]))
        CONSOLE.print(f"segmented video: {video}")
        CONSOLE.print(f"side-by-side views (RGB | prediction | ground truth): {out / 'eval'}")
        CONSOLE.print(f"open it in the viewer: ns-viewer --load-config {config}")
        CONSOLE.print(
            f"total time {minutes:.1f} min (" + ", ".join(f"{k} {v / 60:.1f}" for k, v in seconds.items()) + ")"
        )


def legend_markup(class_names: list[str]) -> str:
    """Rich markup naming each class beside a swatch of its colour in the segmentation (the predictor's colours)."""
    from laser_ns.components.relevancy import class_colours

    parts = []
    for name, colour in zip(class_names, class_colours(class_names).tolist(), strict=True):
        r, g, b = (round(255 * c) for c in colour)
        parts.append(f"[on rgb({r},{g},{b})]   [/] {name}")
    return "  ".join(parts)


def _tool(name: str) -> str:
    """A console script of this environment (next to the running Python), so a venv need not be activated."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH; install laser_ns first.")
    return found


def _run(command: list[str]) -> float:
    """Runs one tool, stopping the demo with its exit code if it fails; returns its wall-clock seconds."""
    CONSOLE.print("[bold]$ " + " ".join(command))
    start = time.perf_counter()
    # the environment's bin folder first, so tools find its ffmpeg even when the venv is not activated
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise SystemExit(f"'{Path(command[0]).name}' failed with exit code {result.returncode}; see its output above.")
    return time.perf_counter() - start


def entrypoint() -> None:
    tyro.cli(Demo).main()


if __name__ == "__main__":
    entrypoint()

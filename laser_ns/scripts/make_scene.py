"""`laser-make-scene`: write a procedural scene with exact per-pixel labels (3D-OVS layout, LLFF or nerfstudio poses).

Example::

    laser-make-scene --output-dir scene/ --preset tabletop --seed 0 --format llff
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from laser_ns.scenes import PRESETS, make_scene

# Built from the registry so `--help` lists exactly the presets that exist.
PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]


@dataclass
class MakeSceneArgs:
    """Render a synthetic scene whose geometry and labels are known exactly."""

    output_dir: Path
    """Scene directory to write (created if missing; must be empty or a scene written by this command)."""
    preset: PresetName = "tabletop"  # type: ignore[valid-type]
    """Which scene to build."""
    seed: int = 0
    """Random seed: the same seed gives byte-identical files."""
    num_views: int = 30
    """Number of camera views."""
    width: int = 160
    """Image width in pixels (160x120 with the CLIP-like teacher's 4-pixel tiles is dense CLIP's tile ratio on a
    5x-downsampled capture, the setting laser-lite and the benchmarks are measured at)."""
    height: int = 120
    """Image height in pixels."""
    annotated_views: tuple[int, ...] | None = None
    """Views that get masks in segmentations/; default: 4 views spread over the sequence."""
    format: Literal["llff", "nerfstudio"] = "llff"
    """Pose file to write: poses_bounds.npy (llff) or transforms.json (nerfstudio)."""
    write_labels: bool = True
    """Also write per-view label maps to labels/ (for the label-map teacher)."""

    def main(self) -> None:
        """Write the scene and report where it went."""
        info = make_scene(
            self.output_dir,
            self.preset,
            seed=self.seed,
            num_views=self.num_views,
            width=self.width,
            height=self.height,
            annotated_views=self.annotated_views,
            fmt=self.format,
            write_labels=self.write_labels,
        )
        print(
            f"Wrote {len(info.image_paths)} views ({info.width}x{info.height}, {self.format}) of preset "
            f"'{self.preset}' (seed {self.seed}) to {info.out_dir}"
        )
        print(f"Annotated views: {info.annotated_views}")
        print(f"Classes ({len(info.class_names)}): {', '.join(info.class_names)}")


def entrypoint() -> None:
    """Console-script entry point."""
    tyro.cli(MakeSceneArgs).main()


if __name__ == "__main__":
    entrypoint()

"""Two CPU processes (gloo) against one process with the same global batch: the figures quoted in docs/multi_gpu.md.

    python benchmarks/ddp_cpu.py --steps 200 --output benchmarks/ddp_cpu.json

Trains laser-lite with every part of the paper on a generated 8-view 64x48 scene, exactly as
``tests/test_distributed.py`` does (same config and worker), and reports wall time, the largest parameter
difference between the ranks, the teacher images each rank computed, and the loss curves' window means.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tests.test_distributed as recipe  # noqa: E402
from laser_ns.distributed import launch_on_cpu  # noqa: E402
from laser_ns.scenes import make_scene  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/ddp_cpu.json"))
    args = parser.parse_args()
    recipe.STEPS = args.steps
    root = Path(tempfile.mkdtemp(prefix="laser_ddp_"))
    scene = root / "scene"
    make_scene(scene, "tabletop", seed=0, num_views=8, width=64, height=48, annotated_views=[0, 5])
    two = recipe._config(scene, root / "two", recipe.RAYS, recipe.PATCHES)
    two.max_num_iterations = args.steps
    two.machine.num_devices = 2
    start = time.perf_counter()
    launch_on_cpu(recipe._train_and_record, 2, two)
    two_seconds = time.perf_counter() - start
    one = recipe._config(scene, root / "one", 2 * recipe.RAYS, 2 * recipe.PATCHES)
    one.max_num_iterations = args.steps
    start = time.perf_counter()
    recipe._train_and_record(0, 1, one)
    one_seconds = time.perf_counter() - start
    ranks = [torch.load(root / "two" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    single = torch.load(root / "one" / "rank0.pt", weights_only=False)
    largest = max(
        float((ranks[0]["state"][k].float() - ranks[1]["state"][k].float()).abs().max())
        for k in ranks[0]["state"]
        if ranks[0]["state"][k].numel()
    )
    window = max(args.steps // 10, 1)

    def means(losses: list[float]) -> list[float]:
        return [round(statistics.mean(losses[i : i + window]), 4) for i in range(0, len(losses), window)]

    report = {
        "steps": args.steps,
        "rays_per_rank": recipe.RAYS,
        "patches_per_rank": recipe.PATCHES,
        "machine": f"{torch.get_num_threads()} torch threads per process, {sys.platform}",
        "two_processes_seconds": round(two_seconds, 1),
        "one_process_seconds": round(one_seconds, 1),
        "largest_parameter_difference_between_ranks": largest,
        "teacher_images_computed_per_rank": [r["computed"] for r in ranks],
        "loss_window_means": {"rank0": means(ranks[0]["losses"]), "rank1": means(ranks[1]["losses"]),
                              "one_process": means(single["losses"])},
    }  # fmt: skip
    args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

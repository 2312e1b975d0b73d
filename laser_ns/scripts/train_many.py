"""laser-train-many: train and evaluate a list of scenes, one ``ns-train`` process per device, and tabulate the scores.

    laser-train-many data/3d-ovs/* --method laser --output-dir runs/3dovs --devices 0 1 -- --max-num-iterations 15000

Each scene trains in its own process (``ns-train METHOD --data SCENE``, or ``laser-train NAME`` with
``--preset-per-scene``) on one device of ``--devices``, then ``laser-eval`` scores it on the scene's annotated views.
Processes are started by a standard-library thread pool, one worker per device; a scene takes the next free device.
Everything after ``--`` goes to every ``ns-train``.

Per scene, under ``OUTPUT_DIR/<scene>/``: the run (``<method>/run/``), the training log (``train.log``), the
evaluation (``eval/metrics.json``) and ``status.json``. The teacher's features stay in each scene's own cache
(``<scene>/laser_cache`` unless the options after ``--`` say otherwise).

Running the same command again resumes: scenes that finished are not trained again (their scores are read back),
a scene that stopped midway trains again from the start (its partial run is removed; its teacher cache is kept).
At the end, a table of every scene's scores is printed and written to ``OUTPUT_DIR/summary.md`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from laser_ns.errors import UserError

TIMESTAMP = "run"
"""The run folder's name under ``OUTPUT_DIR/<scene>/<method>/`` (fixed, so a second command finds it)."""


class ManyScenesError(UserError, ValueError):
    """A scene list or device list that cannot run; the message names the scene or option."""


@dataclass
class SceneResult:
    """One row of the summary."""

    scene: str
    data: str
    state: str = "pending"  # trained | already trained | failed | not evaluated
    device: str = ""
    train_minutes: float | None = None
    miou: float | None = None
    accuracy: float | None = None
    teacher_miou: float | None = None
    config: str | None = None
    log: str | None = None
    message: str = ""
    per_class_iou: dict = field(default_factory=dict)


def _bin(tool: str) -> str:
    """The tool of this environment (next to its python), so a run uses the same install as this command."""
    candidate = Path(sys.executable).parent / tool
    return str(candidate) if candidate.exists() else tool


def scene_list(scenes: list[Path], list_file: Path | None) -> list[Path]:
    """The scene folders in order, from the arguments and ``--scene-list``; names must be unique."""
    paths = list(scenes)
    if list_file is not None:
        if not list_file.is_file():
            raise ManyScenesError(f"--scene-list {list_file} does not exist; give a text file with one scene per line.")
        lines = [line.strip() for line in list_file.read_text().splitlines()]
        paths += [Path(line) for line in lines if line and not line.startswith("#")]
    if not paths:
        raise ManyScenesError("No scenes given: pass scene folders (laser-train-many data/a data/b) or --scene-list.")
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise ManyScenesError(f"Scene folder(s) not found: {', '.join(missing)}.")
    names: dict[str, Path] = {}
    for path in paths:
        if path.resolve().name in names:
            raise ManyScenesError(
                f"Two scenes are named {path.resolve().name!r} ({names[path.resolve().name]} and {path}); each scene's "
                "outputs go to OUTPUT_DIR/<folder name>, so the folder names must differ."
            )
        names[path.resolve().name] = path
    return [p.resolve() for p in paths]


def default_devices() -> list[str]:
    """Every CUDA GPU torch sees, else one CPU slot."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [str(i) for i in range(count)] or ["cpu"]


def _run_dir(out: Path) -> Path | None:
    configs = sorted(out.glob(f"*/{TIMESTAMP}/config.yml"))
    return configs[0].parent if configs else None


def _read_status(out: Path) -> dict:
    try:
        return json.loads((out / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_status(out: Path, status: dict) -> None:
    (out / "status.json").write_text(json.dumps(status, indent=2))


def _env_for(device: str) -> dict[str, str]:
    """The environment of a scene's processes: they see one GPU, as cuda:0. Indices count within an existing
    ``CUDA_VISIBLE_DEVICES`` (e.g. the GPUs a SLURM job was given), as torch's device indices do."""
    env = dict(os.environ)
    if device != "cpu":
        visible = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[int(device)] if int(device) < len(visible) else device
    return env


def train_command(scene: Path, out: Path, method: str, preset: bool, extra: list[str]) -> list[str]:
    """The ``ns-train`` (or ``laser-train``) command of one scene."""
    start = [_bin("laser-train"), scene.name] if preset else [_bin("ns-train"), method]
    return [
        *start,
        "--data", str(scene),
        "--output-dir", str(out.parent),
        "--experiment-name", out.name,
        "--timestamp", TIMESTAMP,
        "--vis", "tensorboard",
        "--viewer.quit-on-train-completion", "True",
        *extra,
    ]  # fmt: skip


def run_scene(
    scene: Path, output_dir: Path, device: str, method: str, preset: bool, extra: list[str], score_teacher: bool
) -> SceneResult:
    """Trains (unless a finished run is there) and evaluates one scene on ``device``."""
    out = output_dir / scene.name
    out.mkdir(parents=True, exist_ok=True)
    result = SceneResult(scene=scene.name, data=str(scene), device=device, log=str(out / "train.log"))
    status = _read_status(out)
    run_dir = _run_dir(out)
    if status.get("state") == "trained" and run_dir is not None:
        result.state = "already trained"
        result.train_minutes = status.get("train_minutes")
    else:
        if run_dir is not None:  # a run that stopped midway: start it again, keeping the scene's teacher cache
            shutil.rmtree(run_dir)
        command = train_command(scene, out, method, preset, extra)
        started = time.monotonic()
        with open(out / "train.log", "w") as log:
            log.write(" ".join(command) + "\n")
            log.flush()
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=_env_for(device)).returncode
        result.train_minutes = round((time.monotonic() - started) / 60, 2)
        run_dir = _run_dir(out)
        if code != 0 or run_dir is None:
            result.state = "failed"
            result.message = _last_error(out / "train.log")
            _write_status(out, {"state": "failed", "return_code": code})
            return result
        result.state = "trained"
        _write_status(out, {"state": "trained", "train_minutes": result.train_minutes, "device": device})
    result.config = str(run_dir / "config.yml")
    evaluate(result, out, run_dir, device, score_teacher)
    return result


def evaluate(result: SceneResult, out: Path, run_dir: Path, device: str, score_teacher: bool) -> None:
    """Scores the run with laser-eval (reused when newer than the run's last checkpoint)."""
    metrics_path = out / "eval" / "metrics.json"
    checkpoints = list((run_dir / "nerfstudio_models").glob("step-*.ckpt"))
    newest = max((c.stat().st_mtime for c in checkpoints), default=0.0)
    fresh = metrics_path.exists() and metrics_path.stat().st_mtime >= newest
    if score_teacher and fresh and "teacher" not in json.loads(metrics_path.read_text()):
        fresh = False
    if not fresh:
        command = [_bin("laser-eval"), "--load-config", str(run_dir / "config.yml"), "--output-dir", str(out / "eval")]
        command += ["--score-teacher"] if score_teacher else []
        with open(out / "eval.log", "w") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=_env_for(device)).returncode
        if code != 0:
            result.state += ", not evaluated"
            result.message = _last_error(out / "eval.log")
            return
    metrics = json.loads(metrics_path.read_text())
    result.miou, result.accuracy = metrics["miou"], metrics["accuracy"]
    result.per_class_iou = metrics.get("per_class_iou", {})
    if "teacher" in metrics:
        result.teacher_miou = metrics["teacher"]["miou"]


def _last_error(log: Path) -> str:
    """The error of a failed run's log: our tools' one-line error, else the last line (the end of a traceback)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    return (errors or lines or [""])[-1][:300]


def summary_markdown(results: list[SceneResult]) -> str:
    def pct(value: float | None) -> str:
        return "" if value is None else f"{100 * value:.1f}"

    lines = [
        "| scene | state | device | train min | mIoU | accuracy | teacher mIoU | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        minutes = "" if r.train_minutes is None else f"{r.train_minutes:.1f}"
        lines.append(
            f"| {r.scene} | {r.state} | {r.device} | {minutes} | {pct(r.miou)} | {pct(r.accuracy)} | "
            f"{pct(r.teacher_miou)} | {r.message} |"
        )
    scored = [r.miou for r in results if r.miou is not None]
    if scored:
        lines.append(f"| **mean of {len(scored)}** | | | | {100 * sum(scored) / len(scored):.1f} | | | |")
    return "\n".join(lines) + "\n"


def train_many(
    scenes: list[Path],
    output_dir: Path,
    devices: list[str],
    method: str = "laser",
    preset: bool = False,
    extra: list[str] | None = None,
    score_teacher: bool = False,
) -> list[SceneResult]:
    """Trains and evaluates ``scenes`` with one worker per entry of ``devices``; writes the summary files."""
    from laser_ns.errors import check_output_dir

    check_output_dir(output_dir, "--output-dir")
    free: queue.Queue[str] = queue.Queue()
    for device in devices:
        free.put(device)
    total = len(scenes)
    finished: list[str] = []  # list.append is atomic: the workers' count of finished scenes

    def job(scene: Path) -> SceneResult:
        device = free.get()
        where = "CPU" if device == "cpu" else f"GPU {device}"
        print(f"[laser-train-many] {scene.name}: starting on {where}", flush=True)
        try:
            result = run_scene(scene, output_dir, device, method, preset, extra or [], score_teacher)
        finally:
            free.put(device)
        finished.append(scene.name)
        score = "" if result.miou is None else f", mIoU {100 * result.miou:.1f}"
        print(
            f"[laser-train-many] [{len(finished)}/{total}] {scene.name}: {result.state}{score} {result.message}",
            flush=True,
        )
        return result

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        results = list(pool.map(job, scenes))
    table = summary_markdown(results)
    (output_dir / "summary.md").write_text(table)
    (output_dir / "summary.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(table, end="")
    print(f"[laser-train-many] wrote {output_dir / 'summary.md'} and summary.json")
    return results


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="laser-train-many",
        description="Train and evaluate several scenes, one ns-train process per device; options after -- go to "
        "every ns-train. Running it again resumes (finished scenes are skipped).",
    )
    parser.add_argument("scenes", nargs="*", type=Path, help="Scene folders (each as ns-train --data takes it).")
    parser.add_argument("--scene-list", type=Path, help="A text file with one scene folder per line.")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/many"), help="Where each scene's run goes.")
    parser.add_argument("--method", default="laser", help="The ns-train method (laser, laser-lite, laser-paper).")
    parser.add_argument(
        "--preset-per-scene",
        action="store_true",
        help="Train each scene with laser-train <folder name> (3D-OVS presets: bed, bench, ...), not --method.",
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        help="CUDA device indices, one process each (default: every GPU); 'cpu' for a CPU slot (repeat it for more).",
    )
    parser.add_argument("--score-teacher", action="store_true", help="laser-eval --score-teacher for every scene.")
    return parser.parse_args(argv), extra


def main(argv: list[str]) -> int:
    args, extra = parse(argv)
    scenes = scene_list(args.scenes, args.scene_list)
    devices = args.devices or default_devices()
    bad = [d for d in devices if d != "cpu" and not d.isdigit()]
    if bad:
        raise ManyScenesError(f"--devices {' '.join(bad)}: give CUDA device indices (0 1 ...) or 'cpu'.")
    results = train_many(
        scenes, args.output_dir, devices, args.method, args.preset_per_scene, extra, args.score_teacher
    )
    return 1 if any(r.state == "failed" or "not evaluated" in r.state for r in results) else 0


def entrypoint() -> None:
    from laser_ns.errors import run_tool

    code = run_tool("laser-train-many", lambda: main(sys.argv[1:]))
    raise SystemExit(code)


if __name__ == "__main__":
    entrypoint()

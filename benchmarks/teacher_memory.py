"""Peak memory and time of the DenseClip teacher (random ViT-B-16 weights, CSA) on one image, on the CPU.

Each (capture size, teacher_image_scale, implementation) runs in a fresh subprocess, so one measurement's allocations
never inflate another's peak. In the child: build the model, make the teacher's input image (the capture size times
the scale, rounded down as nerfstudio does), record the resident set size (RSS), run ``dense_features`` once and
report

- ``peak_rss_mb``: ``ru_maxrss`` after the forward minus the RSS before it (what the brief asks for; it can
  under-report when building the model peaked higher than the forward did);
- ``peak_hwm_mb``: the kernel's high-water mark reset (``/proc/self/clear_refs``) just before the forward, minus the
  same RSS: the forward's own peak;
- ``seconds``: wall time of the forward.

``--before-rev`` runs the same measurement on ``laser_ns/teachers/dense_clip.py`` as it was at a git revision
(loaded from ``git show``), to compare with the code in the working tree.

    python benchmarks/teacher_memory.py --out benchmarks/teacher_memory.json --before-rev 974da1d
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DEFAULT_RUNS = (
    # (capture width, capture height, teacher_image_scale)
    (1008, 756, 0.2),
    (2016, 1512, 0.2),
    (4032, 3024, 0.2),
    (1008, 756, 1.0),
    (2016, 1512, 1.0),
)


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _load_dense_clip(before_source: str | None):
    if before_source is None:
        from laser_ns.teachers import dense_clip

        return dense_clip
    spec = importlib.util.spec_from_file_location("_dense_clip_before", before_source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(width: int, height: int, scale: float, before_source: str | None) -> dict:
    """One measurement, in this (fresh) process."""
    import torch

    dense_clip = _load_dense_clip(before_source)
    teacher = dense_clip.DenseClipConfig(pretrained=None, allow_random_weights=True, mode="csa").setup()
    teacher.clip_model  # noqa: B018  (builds the model)
    teacher_w, teacher_h = int(width * scale), int(height * scale)
    image = torch.rand(teacher_h, teacher_w, 3, generator=torch.Generator().manual_seed(0))
    grid = teacher.grid_size(teacher_h, teacher_w)

    rss_before_kb = _rss_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    start = time.perf_counter()
    features = teacher.dense_features(image)
    seconds = time.perf_counter() - start
    hwm_kb = _rss_kb("VmHWM")
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert features.shape[:2] == grid and torch.isfinite(features).all()
    return {
        "capture": [width, height],
        "teacher_image_scale": scale,
        "teacher_image": [teacher_w, teacher_h],
        "grid": list(grid),
        "tokens": 1 + grid[0] * grid[1],
        "seconds": round(seconds, 2),
        "peak_rss_mb": round((maxrss_kb - rss_before_kb) / 1024, 1),
        "peak_hwm_mb": round((hwm_kb - rss_before_kb) / 1024, 1),
        "rss_after_build_mb": round(rss_before_kb / 1024, 1),
        "torch_threads": torch.get_num_threads(),
    }


def _run_child(command: list[str], env: dict, timeout: float, max_rss_gb: float) -> dict:
    """Run one measurement; kill it (and say so) past ``timeout`` seconds or ``max_rss_gb`` of RSS."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        start, peak_kb, reason = time.monotonic(), 0, None
        while process.poll() is None:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                peak_kb = max(peak_kb, int(status.split("VmRSS:")[1].split()[0]))
            except (OSError, IndexError):
                pass
            if peak_kb > max_rss_gb * 2**20:
                reason = f"killed: RSS passed the {max_rss_gb:g} GB guard"
            elif time.monotonic() - start > timeout:
                reason = f"killed: did not finish in {timeout:.0f} s"
            if reason:
                process.kill()
                process.wait()
                break
            time.sleep(0.1)
        if reason:
            return {
                "error": reason,
                "seconds_until_killed": round(time.monotonic() - start, 1),
                "total_rss_mb_until_killed": round(peak_kb / 1024, 1),  # sampled every 0.1 s; includes the model
            }
        out.seek(0)
        err.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("RESULT ")]
        if process.returncode != 0 or not lines:
            return {"error": f"exit {process.returncode}: {err.read().strip().splitlines()[-1:]}"}
        return json.loads(lines[-1][len("RESULT ") :])


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "teacher_memory.json")
    parser.add_argument("--before-rev", help="also measure dense_clip.py as it was at this git revision")
    parser.add_argument(
        "--runs", nargs="*", default=None, help="WxH@scale entries, e.g. 1008x756@0.2 (default: the table's five)"
    )
    parser.add_argument("--impls", nargs="*", default=["after", "before"], choices=["after", "before"])
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement before giving up")
    parser.add_argument(
        "--max-rss-gb", type=float, default=12.0, help="kill a measurement whose RSS passes this (shared machine)"
    )
    parser.add_argument("--child", nargs=4, metavar=("W", "H", "SCALE", "BEFORE_SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        width, height, scale, source = args.child
        result = child(int(width), int(height), float(scale), None if source == "-" else source)
        print("RESULT " + json.dumps(result))
        return

    runs = DEFAULT_RUNS
    if args.runs:
        runs = []
        for entry in args.runs:
            size, scale = entry.split("@")
            width, height = size.split("x")
            runs.append((int(width), int(height), float(scale)))

    results = json.loads(args.out.read_text())["results"] if args.out.exists() else []
    before_source = None
    if "before" in args.impls:
        if not args.before_rev:
            parser.error("--impls before needs --before-rev")
        text = subprocess.run(
            ["git", "show", f"{args.before_rev}:laser_ns/teachers/dense_clip.py"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        handle = tempfile.NamedTemporaryFile("w", suffix="_dense_clip_before.py", delete=False)
        handle.write(text)
        handle.close()
        before_source = handle.name

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for width, height, scale in runs:
        for impl in args.impls:
            source = before_source if impl == "before" else "-"
            load_start = _loadavg()
            command = [sys.executable, __file__, "--child", str(width), str(height), str(scale), source]
            print(f"{impl}: {width}x{height} @ {scale} ...", flush=True)
            entry = _run_child(command, env, args.timeout, args.max_rss_gb)
            entry.update(
                {
                    "impl": impl,
                    "rev": args.before_rev if impl == "before" else "working tree",
                    "capture": [width, height],
                    "teacher_image_scale": scale,
                    "loadavg_start": load_start,
                    "loadavg_end": _loadavg(),
                    "command": " ".join(["python", "benchmarks/teacher_memory.py", *sys.argv[1:]]),
                }
            )
            print("   ", json.dumps(entry), flush=True)
            results = [
                r
                for r in results
                if (r["impl"], r["capture"], r["teacher_image_scale"]) != (impl, [width, height], scale)
            ]
            results.append(entry)
            payload = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()}, "results": results}
            args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The import plan: every module of laser_ns sits on a floor, and imports only from its own floor or below.

Lazy imports inside functions count too: an arrow that runs back up is a cycle waiting to happen and a module that
cannot be understood from below. ``python -m tests.test_import_plan`` prints the plan.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "laser_ns"

FLOORS: dict[str, int] = {
    # 0: ground: shared conventions, errors, compatibility, checkpoint files
    "laser_ns": 0,
    "laser_ns.conventions": 0,
    "laser_ns.errors": 0,
    "laser_ns.compat": 0,
    "laser_ns.checkpoints": 0,
    # 1: pure parts: tensors in, tensors out
    "laser_ns.components": 1,
    "laser_ns.eval.metrics": 1,
    "laser_ns.data.semantics": 1,
    "laser_ns.teachers.base": 1,
    "laser_ns.teachers.text": 1,
    "laser_ns.fields.backend": 1,
    "laser_ns.export.frames": 1,
    # 2: fields, teachers, scene I/O, generated scenes, schedule, devices
    "laser_ns.fields": 2,
    "laser_ns.teachers": 2,
    "laser_ns.data.dataparser": 2,
    "laser_ns.scenes": 2,
    "laser_ns.schedule": 2,
    "laser_ns.device": 2,
    "laser_ns.distributed": 2,
    # 3: what the model and the tools share: teacher features and batches, queries, 3D geometry from predictions
    "laser_ns.data.datamanager": 3,
    "laser_ns.predictor": 3,
    "laser_ns.eval.consistency": 3,
    "laser_ns.export.point_cloud": 3,
    "laser_ns.export.objects": 3,
    "laser_ns.export.locate": 3,
    "laser_ns.export.ply": 3,
    "laser_ns.export.sanity": 3,
    # 4: the model
    "laser_ns.model_config": 4,
    "laser_ns.model_losses": 4,
    "laser_ns.model": 4,
    "laser_ns.geometry_checkpoint": 4,
    # 5: the viewer's panel, then the pipeline that holds it
    "laser_ns.viewer": 5,
    "laser_ns.pipeline": 6,
    # 7: training runs: trainer, methods, saved runs
    "laser_ns.trainer_config": 7,
    "laser_ns.method_configs": 8,
    "laser_ns.runs": 9,
    # 10: tools on saved runs
    "laser_ns.eval.evaluate": 10,
    "laser_ns.export.run": 10,
    # 11: command lines
    "laser_ns.scripts": 11,
}
"""Module (or package) -> floor; a module takes the floor of its longest listed prefix."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    candidates = [m for m in FLOORS if module == m or module.startswith(m + ".")]
    if not candidates:
        raise AssertionError(f"{module} has no floor in tests/test_import_plan.py FLOORS; give it one.")
    return FLOORS[max(candidates, key=len)]


def imports(path: Path) -> set[str]:
    """The laser_ns modules ``path`` imports (``from laser_ns import x`` names module laser_ns.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("laser_ns"):
            if node.module == "laser_ns":
                found |= {f"laser_ns.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("laser_ns")}
    return found


def arrows() -> list[tuple[str, str]]:
    return sorted(
        (module_name(path), target)
        for path in ROOT.rglob("*.py")
        for target in imports(path)
        if target != module_name(path)
    )


def test_no_import_runs_back_up():
    up = [f"{a} (floor {floor(a)}) -> {b} (floor {floor(b)})" for a, b in arrows() if floor(b) > floor(a)]
    assert not up, "imports that run back up:\n" + "\n".join(up)


def test_no_command_imports_another():
    # shared code of two commands lives below them (export/, predictor), not in one of them
    across = [
        f"{a} -> {b}" for a, b in arrows() if a.startswith("laser_ns.scripts.") and b.startswith("laser_ns.scripts.")
    ]
    assert not across, "commands that import another command:\n" + "\n".join(across)


if __name__ == "__main__":
    for source, target in arrows():
        mark = "  UP" if floor(target) > floor(source) else ""
        print(f"{floor(source):2d} {source} -> {floor(target):2d} {target}{mark}")

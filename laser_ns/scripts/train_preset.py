"""laser-train: ``ns-train`` with a scene preset from ``configs/`` applied first.

    laser-train bed --data data/3d-ovs/bed [any ns-train option, e.g. --max-num-iterations 20000]

A preset is a small YAML file: the method to start from and a list of config overrides (dotted paths). Options
given on the command line win over the preset.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "3dovs"
"""Where named presets live (the repository's configs/3dovs/)."""


class PresetError(ValueError):
    """A preset is missing or malformed; the message names the file."""


def preset_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise PresetError(f"Preset file {path} does not exist.")
        return path
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        available = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise PresetError(f"No preset named '{name_or_path}' in {PRESET_DIR}; available: {available}.")
    return candidate


def read_preset(path: Path) -> tuple[str, dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "method" not in data or not isinstance(data.get("overrides", {}), dict):
        raise PresetError(f"{path} must hold 'method: <name>' and an 'overrides:' mapping of dotted paths.")
    return str(data["method"]), dict(data.get("overrides") or {})


def apply_overrides(config: Any, overrides: dict[str, Any], source: Path) -> None:
    """Sets each dotted path on ``config``; an unknown path is an error naming the preset file."""
    for dotted, value in overrides.items():
        target = config
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not hasattr(target, part):
                raise PresetError(f"{source}: '{dotted}' does not exist ('{part}' is not an option).")
            target = getattr(target, part)
        if not hasattr(target, parts[-1]):
            raise PresetError(f"{source}: '{dotted}' does not exist ('{parts[-1]}' is not an option).")
        setattr(target, parts[-1], value)


def preset_config(name_or_path: str):
    """The TrainerConfig of a preset: its method's defaults with the overrides applied."""
    from nerfstudio.configs.method_configs import all_methods

    path = preset_path(name_or_path)
    method, overrides = read_preset(path)
    if method not in all_methods:
        raise PresetError(f"{path}: method '{method}' is not registered with nerfstudio.")
    import copy

    config = copy.deepcopy(all_methods[method])
    apply_overrides(config, overrides, path)
    return config


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        print(f"usage: laser-train PRESET [ns-train options]   (presets: {', '.join(names)} or a .yaml path)")
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    import tyro
    from nerfstudio.scripts.train import main as train_main

    config = preset_config(argv[0])
    config = tyro.cli(type(config), default=config, args=argv[1:], prog=f"laser-train {argv[0]}")
    train_main(config)


def entrypoint() -> None:
    try:
        main(sys.argv[1:])
    except PresetError as err:
        raise SystemExit(f"laser-train: {err}") from None


if __name__ == "__main__":
    entrypoint()

"""laser-train: ``ns-train`` with a scene preset from ``configs/`` applied first.

    laser-train bed --data data/3d-ovs/bed [any ns-train option, e.g. --max-num-iterations 20000]

A preset is a small YAML file: the method to start from and a list of config overrides (dotted paths). Options
given on the command line win over the preset, and are parsed exactly as ``ns-train <method>`` parses them.

The named presets ship inside the package (``laser_ns/configs/3dovs/``, the repository's top-level ``configs/``
folder), so they are found in an editable install and in a wheel alike.
"""

from __future__ import annotations

import copy
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from laser_ns.errors import UserError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PRESET_DIR: Traversable = resources.files("laser_ns") / "configs" / "3dovs"
"""Where named presets live: package data of laser_ns (the repository's configs/3dovs/)."""


class PresetError(UserError, ValueError):
    """A preset is missing or malformed; the message names the file."""


def preset_names() -> list[str]:
    """The names of the presets that ship with laser_ns."""
    return sorted(p.name[: -len(".yaml")] for p in PRESET_DIR.iterdir() if p.name.endswith(".yaml"))


def preset_path(name_or_path: str) -> Traversable | Path:
    """The file of a named preset, or the given .yaml path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise PresetError(f"Preset file {path} does not exist.")
        return path
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise PresetError(f"No preset named '{name_or_path}' in {PRESET_DIR}; available: {preset_names()}.")
    return candidate


def read_preset(path: Traversable | Path) -> tuple[str, dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "method" not in data or not isinstance(data.get("overrides", {}), dict):
        raise PresetError(f"{path} must hold 'method: <name>' and an 'overrides:' mapping of dotted paths.")
    return str(data["method"]), dict(data.get("overrides") or {})


def apply_overrides(config: Any, overrides: dict[str, Any], source: Traversable | Path) -> None:
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
    config = copy.deepcopy(all_methods[method])
    apply_overrides(config, overrides, path)
    return config


def parse_args(config: Any, args: list[str], prog: str):
    """``config`` with the command-line ``args`` applied, parsed exactly as ``ns-train <method>`` parses them.

    ns-train wraps its methods in ``SuppressFixed`` and ``FlagConversionOff`` (nerfstudio's
    ``AnnotatedBaseConfigUnion``): booleans take a value (``--pipeline.model.use-adapter False``), not a flag pair.
    """
    import tyro
    from nerfstudio.configs.config_utils import convert_markup_to_ansi
    from nerfstudio.scripts.train import __doc__ as train_doc

    tyro.extras.set_accent_color("bright_yellow")
    config_type = tyro.conf.SuppressFixed[tyro.conf.FlagConversionOff[type(config)]]
    return tyro.cli(config_type, default=config, args=args, prog=prog, description=convert_markup_to_ansi(train_doc))


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        print(f"usage: laser-train PRESET [ns-train options]   (presets: {', '.join(preset_names())} or a .yaml path)")
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    from nerfstudio.scripts.train import main as train_main

    from laser_ns.device import DeviceUnavailableError, check_training_device

    command = f"laser-train {argv[0]}"
    config = parse_args(preset_config(argv[0]), argv[1:], prog=command)
    try:
        check_training_device(config, command=command)
    except DeviceUnavailableError as err:
        raise SystemExit(f"laser-train: {err}") from None
    train_main(config)


def entrypoint() -> None:
    try:
        main(sys.argv[1:])
    except PresetError as err:
        raise SystemExit(f"laser-train: {err}") from None


if __name__ == "__main__":
    entrypoint()

"""Docs check: every command in README.md and docs/*.md names a real tool with real options, and every link resolves.

Nothing trains. ``ns-train <method>`` and ``laser-train <preset>`` commands are parsed with tyro against the method's
config exactly as ``ns-train`` parses them (``SuppressFixed[FlagConversionOff[...]]``); the other tools' ``--flags``
are looked up in their ``--help`` output, run once per tool. Any other program must be on a small allow-list.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
TRAIN_METHODS = {"laser", "laser-lite", "laser-paper", "nerfacto-lite", "nerfacto"}
"""The methods the docs may train with ns-train."""
HELP_TOOLS = {
    "laser-eval",
    "laser-export",
    "laser-locate",
    "laser-make-scene",
    "laser-demo",
    "laser-train-many",
    "ns-render",
    "ns-viewer",
    "ns-export",
    "ns-eval",
}
"""Tools whose flags are checked against their --help."""
SUBCOMMAND_TOOLS = {"ns-render", "ns-export"}
"""Tools whose first positional argument is a subcommand with its own --help."""
OTHER_PROGRAMS = {"make", "git", "cd", "export", "pip", "sbatch", "sed", "python"}
"""Programs that are not ours but may appear in a command; anything else is an error."""
SEPARATORS = {";", "&&", "||", "|", "&"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SUBSTITUTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\$\((.*)\)$")
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
DOTTED_OPTION = re.compile(r"^--((?:pipeline|machine|viewer|optimizers|logging)\.[\w.*-]+)$")


@dataclass(frozen=True)
class Command:
    """One command of a fenced shell block: where it is, and its words after shell splitting."""

    doc: str
    line: int
    text: str
    argv: tuple[str, ...]

    def where(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


# ---------------------------------------------------------------------------------------------------------------------
# Reading the docs


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def shell_blocks(text: str) -> list[tuple[int, str, str]]:
    """(first line number, language, body) of every fenced block."""
    return [(text.count("\n", 0, m.start()) + 2, m.group(1).lower(), m.group(2)) for m in FENCE.finditer(text)]


def logical_lines(body: str, first_line: int, console: bool) -> list[tuple[int, str]]:
    """Lines with trailing-backslash continuations joined; in console blocks only the '$ ' lines (output dropped)."""
    lines: list[tuple[int, str]] = []
    pending, start = "", first_line
    for offset, raw in enumerate(body.splitlines()):
        line = raw.rstrip()
        if not pending:
            start = first_line + offset
            if console:
                if not line.lstrip().startswith("$ "):
                    continue
                line = line.lstrip()[2:]
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    if pending:
        lines.append((start, pending))
    return lines


def split_commands(doc: str, line_no: int, line: str) -> list[Command]:
    """The commands of one logical line: comments dropped, split at ; && || | &, leading VAR=value words dropped."""
    stripped = line.strip()
    match = SUBSTITUTION.match(stripped)
    if match:  # scene=$(sed -n ... scenes.txt): the command inside is what runs
        return split_commands(doc, line_no, match.group(1))
    lexer = shlex.shlex(stripped, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = list(lexer)
    commands, current = [], []
    for word in [*words, ";"]:
        if word in SEPARATORS:
            while current and ASSIGNMENT.match(current[0]):
                current.pop(0)
            if current:
                commands.append(Command(doc, line_no, stripped, tuple(current)))
            current = []
        else:
            current.append(word)
    return commands


def doc_commands(doc: str, text: str) -> list[Command]:
    """Every command of the page's bash, sh, shell and console blocks."""
    commands = []
    for first_line, language, body in shell_blocks(text):
        if language in SHELL_LANGUAGES:
            for line_no, line in logical_lines(body, first_line, console=language == "console"):
                commands += split_commands(doc, line_no, line)
    return commands


ALL_COMMANDS = [command for path in DOC_FILES for command in doc_commands(_rel(path), path.read_text())]


# ---------------------------------------------------------------------------------------------------------------------
# What the tools accept


@functools.cache
def methods() -> dict[str, Any]:
    """nerfstudio's methods, ours included (imported on first use: it loads torch and every plugin)."""
    from nerfstudio.configs.method_configs import all_methods

    return all_methods


def parse_train_args(config: Any, args: list[str], prog: str) -> str | None:
    """None when ``args`` parse against ``config`` as ns-train parses them, else tyro's message."""
    import tyro

    config_type = tyro.conf.SuppressFixed[tyro.conf.FlagConversionOff[type(config)]]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            tyro.cli(config_type, default=config, args=args, prog=prog)
    except SystemExit as err:
        return f"exit {err.code}: {out.getvalue().strip()}"
    return None


@functools.cache
def console_scripts() -> set[str]:
    return {ep.name for ep in metadata.entry_points(group="console_scripts")}


def help_key(argv: tuple[str, ...]) -> tuple[str, ...]:
    """(tool,) or (tool, subcommand): the --help that lists this command's flags."""
    tool = argv[0]
    if tool in SUBCOMMAND_TOOLS:
        positional = [word for word in argv[1:] if not word.startswith("-")]
        if positional:
            return (tool, positional[0])
    return (tool,)


HELP_DRIVER = """
import contextlib, io, json, sys
from importlib import metadata

scripts = {ep.name: ep for ep in metadata.entry_points(group="console_scripts")}
result, keys, texts = sys.argv[1], json.loads(sys.argv[2]), {}
for key in keys:
    out, code = io.StringIO(), 0
    sys.argv = [*key, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if key[0] not in scripts:
                raise LookupError(key[0] + " is not an installed console script")
            scripts[key[0]].load()()
    except SystemExit as err:
        code = err.code or 0
    except Exception as err:  # noqa: BLE001 - reported as the help text, so the failing test shows it
        code = repr(err)
    texts[" ".join(key)] = out.getvalue() if code == 0 else f"<--help failed: {code}>\\n{out.getvalue()}"
with open(result, "w") as f:
    json.dump(texts, f)
"""
"""Runs each console script's entry point with --help in one subprocess, so torch and nerfstudio load once."""


class HelpTexts:
    """Every tool's --help, from one background subprocess started once per session."""

    def __init__(self) -> None:
        self.texts: dict[tuple[str, ...], str] = {}
        self.job: tuple[subprocess.Popen, Path, list[tuple[str, ...]]] | None = None

    def start(self, keys: set[tuple[str, ...]], tmp: Path) -> None:
        """Starts the subprocess for the keys not known yet, unless one is running."""
        missing = sorted(key for key in keys if key not in self.texts)
        if self.job is not None or not missing:
            return
        env = {**os.environ, "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"}
        result = tmp / f"help_{os.getpid()}_{len(self.texts)}.json"
        command = [sys.executable, "-c", HELP_DRIVER, str(result), json.dumps(missing)]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.job = (process, result, missing)

    def get(self, keys: set[tuple[str, ...]], tmp: Path) -> dict[tuple[str, ...], str]:
        if self.job is not None and not keys <= self.texts.keys() | set(self.job[2]):
            self.wait()
        self.start(keys, tmp)
        self.wait()
        return self.texts

    def wait(self) -> None:
        if self.job is None:
            return
        process, result, keys = self.job
        self.job = None
        output, _ = process.communicate(timeout=600)
        if process.returncode != 0 or not result.exists():
            raise RuntimeError(f"the --help subprocess failed ({process.returncode}):\n{output}")
        texts = json.loads(result.read_text())
        result.unlink()
        self.texts.update({key: texts[" ".join(key)] for key in keys})

    def stop(self) -> None:
        if self.job is not None:
            self.job[0].kill()
            self.job[0].communicate()
            self.job = None


HELP = HelpTexts()


def help_texts(keys: set[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    return HELP.get(keys, Path(tempfile.gettempdir()))


def help_keys_of(commands: list[Command]) -> set[tuple[str, ...]]:
    return {help_key(_before_double_dash(c.argv)) for c in commands if c.argv[0] in HELP_TOOLS}


def _before_double_dash(argv: tuple[str, ...]) -> tuple[str, ...]:
    return argv[: argv.index("--")] if "--" in argv else argv


def flags(argv: tuple[str, ...]) -> list[str]:
    return [word.split("=", 1)[0] for word in argv if word.startswith("--") and word != "--"]


@functools.cache
def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))


# ---------------------------------------------------------------------------------------------------------------------
# Checking one command


def check(command: Command) -> list[str]:
    """What is wrong with a command; empty when it would parse."""
    argv = command.argv
    brackets = [word for word in argv if word.startswith("[") or word.endswith("]")]
    if brackets:
        return [f"{brackets}: [optional] brackets are not shell syntax; write each variant as its own command"]
    tool = argv[0]
    if tool == "ns-train":
        return check_ns_train(argv)
    if tool == "laser-train":
        return check_laser_train(argv)
    if tool in HELP_TOOLS:
        return check_help_flags(argv)
    if tool in OTHER_PROGRAMS:
        return check_other(command, argv)
    return [f"unknown program '{tool}': not one of our tools and not on the allow-list {sorted(OTHER_PROGRAMS)}"]


def check_ns_train(argv: tuple[str, ...]) -> list[str]:
    if len(argv) < 2 or argv[1] not in TRAIN_METHODS:
        return [f"ns-train needs one of the methods {sorted(TRAIN_METHODS)} first, got {argv[1:2]}"]
    method = argv[1]
    if method not in methods():
        return [f"method '{method}' is not registered with nerfstudio"]
    error = parse_train_args(methods()[method], list(argv[2:]), prog=f"ns-train {method}")
    return [error] if error else []


def check_laser_train(argv: tuple[str, ...]) -> list[str]:
    from laser_ns.scripts.train_preset import PresetError, preset_config, preset_names

    if len(argv) < 2:
        return ["laser-train needs a preset name"]
    try:
        config = preset_config(argv[1])
    except PresetError as err:
        return [f"preset '{argv[1]}': {err} (presets: {preset_names()})"]
    error = parse_train_args(config, list(argv[2:]), prog=f"laser-train {argv[1]}")
    return [error] if error else []


def check_help_flags(argv: tuple[str, ...]) -> list[str]:
    tool = argv[0]
    if tool not in console_scripts() or not (BIN / tool).exists():
        return [f"'{tool}' is not an installed console script in {BIN}"]
    own = _before_double_dash(argv)
    key = help_key(own)
    text = help_texts({key})[key]
    if text.startswith("<--help failed"):
        return [f"'{' '.join(key)} --help' failed: {text}"]
    errors = [
        f"'{flag}' is not in '{' '.join(key)} --help'"
        for flag in flags(own)
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)
    ]
    if tool == "laser-train-many" and "--" in argv:
        errors += check_train_many_passthrough(own, argv[len(own) + 1 :])
    return errors


def check_train_many_passthrough(own: tuple[str, ...], passthrough: tuple[str, ...]) -> list[str]:
    """Options after '--' go to every ns-train: parse them against --method (presets start from laser-paper)."""
    method = "laser-paper" if "--preset-per-scene" in own else "laser"
    if "--method" in own:
        method = own[own.index("--method") + 1]
    return check_ns_train(("ns-train", method, *passthrough))


def check_other(command: Command, argv: tuple[str, ...]) -> list[str]:
    tool = argv[0]
    if tool == "make":
        targets = [word for word in argv[1:] if not word.startswith("-") and "=" not in word]
        return [f"make target '{t}' is not in the Makefile" for t in targets if t not in make_targets()]
    if tool == "git" and argv[1:2] != ("clone",):
        return [f"only 'git clone' is allowed, got {' '.join(argv[:2])}"]
    if tool == "python":
        module = argv[2] if argv[1:2] == ("-m",) and len(argv) > 2 else None
        if module not in ("pytest", "pip"):
            return ["python is allowed only as 'python -m pytest' or 'python -m pip'"]
        if module == "pytest":
            paths = [word.split("::")[0] for word in argv[3:] if not word.startswith("-")]
            return [f"'{p}' does not exist" for p in paths if not (ROOT / p).exists()]
    if tool == "sbatch" and "--wrap" in argv:
        wrapped = argv[argv.index("--wrap") + 1]
        return [f"in --wrap: {e}" for c in split_commands(command.doc, command.line, wrapped) for e in check(c)]
    return []


# ---------------------------------------------------------------------------------------------------------------------
# Links, anchors and options named in prose


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    seen: dict[str, int] = {}
    result = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = github_anchor(heading)
        result.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return result


def prose(path: Path) -> str:
    """The page without fenced blocks and inline code (links inside them are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", path.read_text()))


def links(path: Path) -> list[str]:
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(path))


def inline_options(path: Path) -> list[str]:
    """Dotted config options (``--pipeline.model.x``) named in inline code outside fenced blocks."""
    spans = re.findall(r"`([^`\n]+)`", FENCE.sub("", path.read_text()))
    found = []
    for span in spans:
        first = span.split()[0] if span.split() else ""
        match = DOTTED_OPTION.match(first)
        if match:
            found.append(match.group(1))
    return found


def resolves(config: Any, dotted: str) -> bool:
    """Whether ``pipeline.model.use-adapter`` (or a ``prefix.*``) is a field of ``config``."""
    target = config
    for part in dotted.split("."):
        if part == "*":
            return True
        name = part.replace("-", "_")
        if isinstance(target, dict):
            if name not in target:
                return False
            target = target[name]
        elif hasattr(target, name):
            target = getattr(target, name)
        else:
            return False
    return True


# ---------------------------------------------------------------------------------------------------------------------
# Tests


def test_docs_have_commands():
    """The extractor finds the commands it must check (a broken extractor would check nothing)."""
    argvs = [c.argv for c in ALL_COMMANDS]
    assert ("make", "demo") in argvs and ("make", "test") in argvs
    tools = {argv[0] for argv in argvs}
    assert {"ns-train", "laser-train", "laser-eval", "laser-export", "laser-locate", "ns-render"} <= tools
    assert len(ALL_COMMANDS) >= 40, [c.where() for c in ALL_COMMANDS]


def test_readme_quick_start_is_make_demo_and_make_test():
    """CI and users run exactly these two commands from the README's quick start."""
    text = (ROOT / "README.md").read_text()
    quick = text[text.index("## Quick start") : text.index("## Install")]
    commands = [c.argv for c in doc_commands("README.md", quick)]
    assert commands == [("make", "demo"), ("make", "test")]


def test_readme_is_short():
    """Issue 19: the README says what laser_ns is and how to start (6 to 10 KB); details live in docs/."""
    size = len((ROOT / "README.md").read_bytes())
    assert 6_000 <= size <= 10_000, f"README.md is {size} bytes; move details to a page under docs/"


def test_splitting():
    text = (
        "```bash\n#!/bin/bash\n#SBATCH --gres=gpu:1\nA=1 laser-eval --load-config x \\\n    --output-dir e  # c\n"
        'scene=$(sed -n "1p" s.txt)\ncd x && make test\n```\n```console\n$ make demo\noutput line\n```\n'
    )
    got = [(c.line, c.argv) for c in doc_commands("t.md", text)]
    assert got == [
        (4, ("laser-eval", "--load-config", "x", "--output-dir", "e")),
        (6, ("sed", "-n", "1p", "s.txt")),
        (7, ("cd", "x")),
        (7, ("make", "test")),
        (10, ("make", "demo")),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "ns-train laser --data scene/ --pipeline.model.no-such-option 1",
        "ns-train laser-huge --data scene/",
        "laser-train no-such-scene --data d",
        "laser-eval --load-config c.yml --no-such-flag",
        "laser-train-many s --devices 0 -- --pipeline.model.no-such-option 1",
        "rm -rf outputs",
        "make no-such-target",
        "laser-eval --load-config c.yml [--downscale 8]",
    ],
)
def test_check_rejects(text):
    """The check fails on what a user would hit: an unknown option, method, preset, flag, program or target."""
    (command,) = split_commands("t.md", 1, text)
    assert check(command), text


@pytest.fixture(scope="module", autouse=True)
def help_in_background(tmp_path_factory):
    """Starts the --help subprocess first, so it runs while this process imports nerfstudio for ns-train."""
    HELP.start(help_keys_of(ALL_COMMANDS) | {("laser-eval",)}, tmp_path_factory.mktemp("help"))
    yield
    HELP.stop()


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: f"{c.doc}:{c.line}:{c.argv[0]}")
def test_command(command):
    errors = check(command)
    assert not errors, f"{command.where()}\n" + "\n".join(errors)


@pytest.mark.parametrize("path", DOC_FILES, ids=_rel)
def test_links(path):
    """Every relative link points at a file; every #anchor into a page at one of its headings."""
    errors = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            errors.append(f"{target}: {linked} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            errors.append(f"{target}: no heading '#{anchor}' in {_rel(linked)} (has {sorted(anchors(linked))})")
    assert not errors, f"{_rel(path)}:\n" + "\n".join(errors)


@pytest.mark.parametrize("path", DOC_FILES, ids=_rel)
def test_options_named_in_prose_exist(path):
    """A `--pipeline.x.y` named in the text is a field of one of our methods' configs."""
    configs = [methods()[m] for m in sorted(TRAIN_METHODS)]
    wrong = [o for o in inline_options(path) if not any(resolves(c, o) for c in configs)]
    assert not wrong, f"{_rel(path)} names options no method has: {wrong}"


def test_docs_cite_no_missing_files():
    """METHOD.md is not in the repository: the pages cite docs/method.md instead."""
    citing = [_rel(p) for p in DOC_FILES if "METHOD.md" in p.read_text()]
    assert not citing, f"{citing} cite METHOD.md; cite docs/method.md#<heading> instead"


def test_code_citations_of_the_docs_resolve():
    """`docs/<page>.md#<anchor>` cited in code, configs and tests names an existing page and heading."""
    errors = []
    for path in [*ROOT.glob("laser_ns/**/*.py"), *ROOT.glob("configs/**/*.yaml"), *ROOT.glob("tests/**/*.py")]:
        for page, anchor in re.findall(r"docs/([\w-]+\.md)(?:#([\w-]+))?", path.read_text()):
            target = ROOT / "docs" / page
            if not target.exists():
                errors.append(f"{_rel(path)}: docs/{page} does not exist")
            elif anchor and anchor not in anchors(target):
                errors.append(f"{_rel(path)}: no heading '#{anchor}' in docs/{page}")
    assert not errors, "\n".join(errors)

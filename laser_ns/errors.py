"""User errors: bad input whose message names the file or value and the fix, printed without a traceback.

Every error a user can cause and fix (a missing scene file, a device this machine lacks, a read-only folder, missing
CLIP weights, another method's run) derives from :class:`UserError` as well as from the built-in class it always had
(``ValueError``, ``RuntimeError``), so code catching those keeps working. The command-line tools, and ``ns-train``
through :class:`laser_ns.trainer_config.LaserTrainer`, print such an error as one line, ``<tool>: error: <message>``,
and exit with status 1. Set ``LASER_NS_VERBOSE=1`` to see the traceback as well.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

VERBOSE_VARIABLE = "LASER_NS_VERBOSE"
"""Environment variable that brings the traceback of a user error back."""

T = TypeVar("T")


class UserError(Exception):
    """Bad input; the message says what was wrong and what to do."""


class ExportError(UserError, ValueError):
    """Bad input to an export or localisation; the message says what was wrong and what to do."""


class OutputNotWritableError(UserError, OSError):
    """An output folder cannot be written; raised before any expensive work, so nothing computed is lost."""


def verbose() -> bool:
    """Whether tracebacks of user errors are shown (``LASER_NS_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def report(tool: str, error: BaseException) -> None:
    """Prints ``error`` as one clear message (with its traceback only in verbose mode)."""
    from nerfstudio.utils.rich_utils import CONSOLE
    from rich.markup import escape

    if verbose():
        CONSOLE.print_exception()
    CONSOLE.print(f"[bold red]{escape(tool)}: error:[/bold red] {escape(str(error))}", highlight=False, soft_wrap=True)
    if not verbose():
        CONSOLE.print(f"(set {VERBOSE_VARIABLE}=1 for the traceback)", style="dim", highlight=False)


def warn(message: str) -> None:
    """Prints ``message`` as one warning line (not wrapped, so paths and options stay whole)."""
    from nerfstudio.utils.rich_utils import CONSOLE
    from rich.markup import escape

    CONSOLE.print(f"[bold yellow]warning:[/bold yellow] {escape(message)}", highlight=False, soft_wrap=True)


def run_tool(tool: str, main: Callable[[], T]) -> T:
    """Runs a command's ``main``; a :class:`UserError` ends it with its message and exit status 1."""
    try:
        return main()
    except UserError as error:
        report(tool, error)
        sys.exit(1)


def write_probe(folder: Path) -> Path:
    """A file name for testing that ``folder`` takes writes; a new one per call, so two tools or ranks probing one
    folder at the same time never remove each other's probe."""
    return Path(folder) / f".laser_ns_write_test.{os.getpid()}.{uuid.uuid4().hex}"


def check_output_dir(path: Path, option: str) -> Path:
    """Creates ``path`` (an output folder given by ``option``) and checks a file can be written in it, before the
    tool renders anything; raises :class:`OutputNotWritableError` naming the option otherwise."""
    path = Path(path)
    probe = write_probe(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OutputNotWritableError(
            f"Cannot write to {path} ({type(error).__name__}: {error.strerror or error}). Pass a writable folder "
            f"with {option}."
        ) from error
    return path

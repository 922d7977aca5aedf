"""What every sub-command shares: exit statuses, refusals and checks of output places.

A sub-command that cannot proceed raises :class:`CLIError` (library errors it expects are
re-raised as one; every sub-command reads its device through :func:`checked_device`);
:func:`kvq.cli.main.main` prints it as one line, ``kvq <sub-command>: error: ...``, and exits
with :data:`EXIT_REFUSED`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import torch

EXIT_OK = 0  # everything done: every input scored
EXIT_FAILED_INPUTS = 1  # kvq score: some inputs failed (their rows hold the error)
EXIT_REFUSED = 2  # the run itself could not proceed: arguments, weights, output, device
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT), as shells report 128 + SIGINT

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CLIError(Exception):
    """A run refused (:data:`EXIT_REFUSED`); the message is printed as one line."""


def error_line(prog: str, message: object) -> str:
    """``PROG: error: MESSAGE`` on one line, without terminal escape codes."""
    text = _undecodable_shown(_ANSI_ESCAPE.sub("", str(message)))
    return f"{prog}: error: {' '.join(_CONTROL.sub(' ', text).split())}"


def printable(text: str) -> str:
    """``text`` on one line as any UTF-8 terminal can print it: the bytes of a file name that
    is not UTF-8 (surrogate escapes) shown as ``\\xff`` instead of an encoding error, control
    characters (a newline in a file name) as Python escapes them (``\\n``)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], _undecodable_shown(text))


def _undecodable_shown(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def describe(err: BaseException) -> str:
    """The message of a refusal: an :class:`OSError` as ``FILE: reason``."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return str(err)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (examples keep their lines); an option's help ends with its
    default where it has one that its help does not already give."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or action.default in (None, False, argparse.SUPPRESS)
            or "default" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``kvq score: error: ...``), exit status 2, and
    every option's default in its help (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_REFUSED, error_line(self.prog, f"{message} (see {self.prog} --help)") + "\n")


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def check_writable_file(path: str | Path, what: str) -> None:
    """Refuse a file ``path`` that cannot be written (``what`` names it, e.g. ``--out``):
    a folder, or in a place where no file can be created. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{what} {path} is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise CLIError(f"{what} {path} is not writable")
    _check_can_create_in(path.parent, what, path)


def check_writable_folder(path: str | Path, what: str) -> None:
    """Refuse a folder ``path`` that cannot be created or written in (``what`` names it, e.g.
    ``--maps``). Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{what} {path} is a file, not a folder")
    _check_can_create_in(path, what, path)


def _check_can_create_in(folder: Path, what: str, path: Path) -> None:
    """A file can be created in ``folder``, or its nearest existing parent is a folder in which
    one can be (a temporary file is created there and removed at once)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"{what} {path}: {existing} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        reason = err.strerror or err
        raise CLIError(f"{what} {path}: cannot create files in {existing} ({reason})") from None


def checked_device(name: str) -> torch.device:
    """The device ``--device`` (or a config's ``device``) names, resolved as every kvq entry
    point resolves it (:func:`kvq.runtime.resolve_device`); one that is not there is refused."""
    from kvq.runtime import DeviceError, resolve_device

    try:
        return resolve_device(name)
    except DeviceError as err:
        raise CLIError(err) from None


def refuse(prog: str, err: BaseException) -> int:
    """Print ``err`` as the one-line refusal of ``prog``; returns :data:`EXIT_REFUSED`."""
    print(error_line(prog, describe(err)), file=sys.stderr)
    return EXIT_REFUSED


_INTERRUPT = threading.Event()


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C (SIGINT) stops the run: :class:`KeyboardInterrupt` at once, as by default, and
    again at the next :func:`check_interrupt` of a long loop — Python drops a
    KeyboardInterrupt that lands in a finalizer or callback ("Exception ignored in ..."), and
    without the second chance such a run would go on to the end. Installed in the main thread
    only (the only one that receives signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: object) -> None:
        _INTERRUPT.set()
        raise KeyboardInterrupt

    _INTERRUPT.clear()
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _INTERRUPT.clear()


def check_interrupt() -> None:
    """Raise :class:`KeyboardInterrupt` if Ctrl-C was pressed (see :func:`interruptible`)."""
    if _INTERRUPT.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def messages_on_stderr(prog: str) -> Iterator[None]:
    """While a sub-command runs, the messages of kvq's loggers go to stderr one line each:
    progress as it is, warnings as ``PROG: warning: ...``."""
    logger = logging.getLogger("kvq")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrefixWarnings(prog))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class _PrefixWarnings(logging.Formatter):
    def __init__(self, prog: str) -> None:
        super().__init__("%(message)s")
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        text = _undecodable_shown(super().format(record))
        return f"{self.prog}: warning: {text}" if record.levelno >= logging.WARNING else text

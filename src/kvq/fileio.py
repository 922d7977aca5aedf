"""Writing files safely: whole or not at all (:func:`atomic_write`), one writer at a time
(:class:`ExclusiveLock`), and file names made from free text (:func:`slug`).

Every file kvq writes in one go (weights, checkpoints, caches, corpus records, result files)
goes through :func:`atomic_write`: a crash mid-write leaves the previous file (or none), never
a torn one.

A long job that appends to a file (a result file of ``kvq score``) holds a lock on a sidecar
``NAME.lock`` for as long as it writes; a second job on the same file is refused at once
(:class:`FileLockedError`, naming the process that holds it) instead of interleaving its rows
with the first one's. The lock is the kernel's (``flock``): it goes with the process that holds
it, so a killed run never leaves a stale lock behind — only a stale ``.lock`` file, which the
next run takes over.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; a second run there is not detected
    fcntl = None


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the process's umask, for the files atomic_write makes


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` whole or not at all: ``write(tmp)`` writes a temporary file in the same
    folder (it keeps ``path``'s suffix, for writers that look at it), which is flushed to disk
    and renamed over ``path``; the folder is created. A failed write leaves no temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # as an ordinary new file (mkstemp makes it private)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def slug(text: str, default: str = "file") -> str:
    """``text`` as a safe, flat file name part: runs of anything but letters, digits, ``.``,
    ``-`` and ``_`` become one ``_`` (``default`` when nothing is left)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or default


class FileLockedError(RuntimeError):
    """Another process holds the lock of a file this run would write."""


class ExclusiveLock:
    """An exclusive, non-blocking lock on ``path`` (held through ``path.lock``).

    ``acquire`` raises :class:`FileLockedError` naming the holder (its PID, host and start
    time, which it writes into the lock file); ``release`` unlocks and removes the lock file.
    """

    def __init__(self, path: str | Path) -> None:
        self.target = Path(path)
        self.path = self.target.with_name(self.target.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> ExclusiveLock:
        if fcntl is None or self._fd is not None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
                os.close(fd)
                raise FileLockedError(
                    f"{self.target} is being written by another run ({holder or 'unknown'}); "
                    "wait for it to finish, or write to another file"
                ) from None
            # The holder before us may have removed the file between our open and our lock:
            # then we hold a lock on a name nobody sees, and must lock the new file instead.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter then re-checks the name
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> ExclusiveLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

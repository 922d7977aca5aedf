"""Files that several processes may touch at once: an exclusive lock on a file kvq writes.

A long job that appends to a file (a result file of ``kvq score``) holds a lock on a sidecar
``NAME.lock`` for as long as it writes; a second job on the same file is refused at once
(:class:`FileLockedError`, naming the process that holds it) instead of interleaving its rows
with the first one's. The lock is the kernel's (``flock``): it goes with the process that holds
it, so a killed run never leaves a stale lock behind — only a stale ``.lock`` file, which the
next run takes over.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; a second run there is not detected
    fcntl = None


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

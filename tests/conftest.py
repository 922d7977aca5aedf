"""Shared test fixtures."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def reference_keys():
    """Read a checkpoint key list (tests/data/*.tsv, from shared/reference) → {key: shape}."""

    def read(name: str) -> dict[str, tuple[int, ...]]:
        keys = {}
        for line in (DATA / name).read_text().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            key, shape = line.split("\t")
            keys[key] = tuple(ast.literal_eval(shape))
        return keys

    return read


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, for a process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""Resumable training state: atomic writes and the random-number-generator states.

A checkpoint is a ``torch.save`` dict of tensors and plain values only, so it loads with
``torch.load(weights_only=True)`` — nothing in it is unpickled as code.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kvq.fileio import atomic_write

FORMAT = "kvq-train-state/1"


def atomic_save(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``:
    a crash mid-write leaves the previous checkpoint intact."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


class CheckpointError(ValueError):
    """A training checkpoint that cannot be read (cut short, or not one of ours)."""


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`atomic_save` (tensors and plain values only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        reason = str(err).split(". ")[0]  # torch adds advice on corrupted files
        raise CheckpointError(f"{path}: not a readable training checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a kvq training checkpoint ({FORMAT})")
    return state


def rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), NumPy and Python generator states of this process."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))

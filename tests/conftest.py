"""Shared test fixtures."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
# The header of the tiny scoring weights (:func:`weights`): 8 frames of 64×64, a MOS scale.
INPUT = {"size": [64, 64], "num_segments": 2}
CALIBRATION = {"a": 2.0, "b": 3.0, "low": 1.0, "high": 5.0, "scale": "MOS 1-5"}


@pytest.fixture(scope="session")
def reference_keys():
    """Read the key list of a published checkpoint (tests/data/*.tsv) → {key: shape}."""

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


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """Tiny kvq-xs scoring weights (random, with a calibration): fast to load and run."""
    import kvq
    from kvq.models import save_pretrained

    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", embed_dim=24, depths=(1, 1, 2, 1))
    with torch.no_grad():
        model.prior_fusion.weight.normal_()
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    return save_pretrained(model, path, {"input": INPUT, "calibration": CALIBRATION})


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Path:
    """A folder of three inputs: a.mp4, sub/b.mkv and an image c.png."""
    from video_factory import make_image, make_video

    root = tmp_path_factory.mktemp("media")
    make_video(root / "a.mp4", frames=30, size=(72, 96), pattern="gradient")
    (root / "sub").mkdir()
    make_video(root / "sub" / "b.mkv", frames=12, size=(48, 64), pattern="noise")
    make_image(root / "c.png", size=(50, 70))
    return root

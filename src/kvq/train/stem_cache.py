"""Training on a frozen stem's output, computed once.

When the stem of a model is frozen (``kvq-lite``'s ImageNet CNN), its output for a clip never
changes during training, and it is most of the cost of a CPU training step. :func:`build_stem_cache`
decodes ``views`` random views (temporal starts and fragment positions) of every training video,
runs the stem on each view and on each of its Local Perception Constraint cubes, and keeps the
results (float16). :class:`StemCacheDataset` then serves, for ``(index, seed)``, view
``seed mod views`` of that video: training draws a new view every epoch as it would from the
videos themselves, but from a finite set.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from kvq.data.datasets import VideoQualityDataset, collate_clips
from kvq.fileio import atomic_write
from kvq.models.lite_backbone import FrameStem
from kvq.runtime import WorkerInit
from kvq.train.losses import cut_cubes
from kvq.video import to_model_input

log = logging.getLogger(__name__)


class StemCacheError(RuntimeError):
    """The cache cannot be built: no training video could be read."""


def _fingerprint(
    dataset: VideoQualityDataset,
    views: int,
    cube: tuple[int, int, int] | None,
    seed: int,
    stem: FrameStem,
) -> str:
    digest = hashlib.sha1()
    digest.update(json.dumps([asdict(dataset.spec), views, cube, seed, stem.strides]).encode())
    for label in dataset.labels:
        digest.update(f"{label.path}|{label.mos}".encode())
    stem_state = stem.state_dict()
    for key in sorted(stem_state):
        digest.update(key.encode())
        digest.update(stem_state[key].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def build_stem_cache(
    model: torch.nn.Module,
    dataset: VideoQualityDataset,
    views: int,
    cube: tuple[int, int, int] | None,
    seed: int,
    path: Path,
    num_workers: int = 1,
    progress: bool = True,
) -> dict[str, Tensor]:
    """Stem outputs of ``views`` random views of every video of ``dataset`` (a training
    dataset) → ``{"embedding": (N, V, T, C, h, w), "cubes": (N, V, n, c_t, C, c_h', c_w'),
    "readable": (N,) bool}``; ``cubes`` only when ``cube`` (the LPC cube size) is given.

    Stored in ``path`` (safetensors) and reused when the data, views, seed, stem weights and
    stem strides are the same; a video that cannot be read is marked unreadable (and reported once).
    """
    stem = model.backbone.stem
    fingerprint = _fingerprint(dataset, views, cube, seed, stem)
    if path.is_file():
        cached = load_file(path)
        if (
            "fingerprint" in cached
            and bytes(cached["fingerprint"].tolist()).decode() == fingerprint
        ):
            log.info("stem cache: reusing %s", path)
            return {k: v for k, v in cached.items() if k != "fingerprint"}
    stem = stem.inference_copy()
    # (video, view, sampling seed): every view of every video drawn independently.
    items = [
        (i, v, seed * 1_000_003 + v * 7919 + i) for v in range(views) for i in range(len(dataset))
    ]
    loader = DataLoader(
        _Items(dataset, [(i, s) for i, _, s in items]),
        batch_size=1,
        num_workers=num_workers,
        collate_fn=collate_clips,
        worker_init_fn=WorkerInit(),
    )
    embeddings: list[list[Tensor | None]] = [[None] * views for _ in range(len(dataset))]
    cube_embeddings: list[list[Tensor | None]] = [[None] * views for _ in range(len(dataset))]
    readable = torch.ones(len(dataset), dtype=torch.bool)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="view", desc="stem cache")
    for (index, view, _), batch in zip(items, loader, strict=True):
        for failed, reason in batch["skipped"]:
            if readable[index]:
                log.warning("stem cache: skipping %s: %s", failed, reason)
            readable[index] = False
        if batch["clip"] is not None:
            x = to_model_input(batch["clip"], stem)
            embeddings[index][view] = stem(x)[0].half().cpu()
            if cube is not None:
                cubes, _grid = cut_cubes(x, cube)
                cube_embeddings[index][view] = stem(cubes).half().cpu()
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    if not readable.any():
        raise StemCacheError("no training video could be read")
    out = {"embedding": _stack(embeddings, readable), "readable": readable}
    if cube is not None:
        out["cubes"] = _stack(cube_embeddings, readable)
    tag = torch.tensor(list(fingerprint.encode()), dtype=torch.uint8)
    atomic_write(path, lambda tmp: save_file({**out, "fingerprint": tag}, str(tmp)))
    return out


class _Items(Dataset):
    def __init__(self, dataset: VideoQualityDataset, items: list[tuple[int, int]]) -> None:
        self.dataset, self.items = dataset, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict:
        return self.dataset[self.items[k]]


def _stack(per_video: list[list[Tensor | None]], readable: Tensor) -> Tensor:
    """``(N, V, …)``; an unreadable video gets zeros (it is never sampled)."""
    template = next(e for views in per_video for e in views if e is not None)
    zeros = torch.zeros_like(template)
    return torch.stack(
        [
            torch.stack([e if e is not None and ok else zeros for e in views])
            for views, ok in zip(per_video, readable.tolist(), strict=True)
        ]
    )


class StemCacheDataset(Dataset):
    """``(index, seed)`` → a sample dict like :class:`~kvq.data.datasets.VideoQualityDataset`'s,
    with ``embedding`` (float16 stem output of view ``seed mod V``) and ``cubes`` instead of
    ``clip``. Unreadable videos are substituted by the next readable one."""

    def __init__(self, cache: dict[str, Tensor], mos: list[float]) -> None:
        self.cache, self.mos = cache, mos
        self.readable = cache["readable"].tolist()

    def __len__(self) -> int:
        return len(self.mos)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        while not self.readable[index]:
            index = (index + 1) % len(self)
        view = seed % self.cache["embedding"].shape[1]
        sample = {"embedding": self.cache["embedding"][index, view], "index": index}
        if "cubes" in self.cache:
            sample["cubes"] = self.cache["cubes"][index, view]
        return {**sample, "mos": self.mos[index], "skipped": []}


def collate_embeddings(samples: list[dict]) -> dict:
    """Stack :class:`StemCacheDataset` samples (``cubes`` flattened over the batch, video by
    video, as :func:`~kvq.train.losses.cut_cubes` orders them)."""
    batch = {
        "embedding": torch.stack([s["embedding"] for s in samples]),
        "mos": torch.tensor([float(s["mos"]) for s in samples], dtype=torch.float32),
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "skipped": [],
    }
    if "cubes" in samples[0]:
        batch["cubes"] = torch.cat([s["cubes"] for s in samples])
    return batch

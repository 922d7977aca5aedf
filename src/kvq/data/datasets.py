"""Torch datasets of labelled videos, the training data order and the random-split protocol.

:class:`VideoQualityDataset` decodes clips with :mod:`kvq.video` inside DataLoader workers and
returns uint8 clips (normalisation happens on the training device, where it is cheap). A video
that cannot be read never stops an epoch: the sample records which file failed and why, and
:func:`collate_clips` passes that on so the main process can report it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset, Sampler

from kvq.data.labels import VideoLabel
from kvq.fileio import atomic_write
from kvq.video import ClipSpec, VideoError, load_clip


class VideoQualityDataset(Dataset):
    """Videos with their MOS; item ``i`` (or ``(i, seed)``) → a sample dict.

    A sample holds ``clip`` (uint8 ``(T, H, W, 3)``), ``mos``, ``index`` and ``skipped``
    (``[(path, reason), …]`` of videos that failed). ``train`` draws random temporal starts
    and crops from ``seed``; otherwise sampling is deterministic. With ``substitute_failed``
    (training, where every batch must keep its size) a failed video is replaced by the next
    readable one; otherwise the sample carries no clip and the collate drops it.

    ``cache_dir`` stores each decoded clip once (safetensors) and reuses it for later epochs;
    cached clips are decoded deterministically, so training on a cache trades the random
    temporal/spatial sampling for decoding each video only once.
    """

    def __init__(
        self,
        labels: Sequence[VideoLabel],
        video_root: str | Path,
        spec: ClipSpec,
        train: bool = False,
        cache_dir: str | Path | None = None,
        substitute_failed: bool = False,
    ) -> None:
        self.labels = list(labels)
        self.video_root = Path(video_root)
        self.spec = spec
        self.train = train
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.substitute_failed = substitute_failed
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> Path:
        return self.video_root / self.labels[index].path

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, seed = item if isinstance(item, tuple) else (item, None)
        skipped = []
        attempts = len(self) if self.substitute_failed else 1
        for offset in range(attempts):
            current = (index + offset) % len(self)
            try:
                clip = self._load(current, seed)
            except VideoError as err:
                skipped.append((str(self.path(current)), str(err)))
                continue
            return {
                "clip": clip,
                "mos": self.labels[current].mos,
                "index": current,
                "skipped": skipped,
            }
        return {"clip": None, "mos": self.labels[index].mos, "index": index, "skipped": skipped}

    def _load(self, index: int, seed: int | None) -> torch.Tensor:
        path = self.path(index)
        if not path.is_file():
            raise VideoError(f"{path}: file not found")
        if self.cache_dir is None:
            rng = np.random.default_rng(seed) if self.train else None
            return load_clip(path, self.spec, train=self.train, rng=rng)
        cached = self.cache_dir / f"{self._cache_key(path)}.safetensors"
        if cached.is_file():
            return load_file(cached)["clip"]
        clip = load_clip(path, self.spec, train=False)
        _atomic_save_tensor(clip, cached)
        return clip

    def _cache_key(self, path: Path) -> str:
        stat = path.stat()
        ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.spec!r}"
        return hashlib.sha1(ident.encode()).hexdigest()


def _atomic_save_tensor(clip: torch.Tensor, path: Path) -> None:
    """Written whole or not at all, so concurrent workers never read half a file."""
    atomic_write(path, lambda tmp: save_file({"clip": clip.contiguous()}, str(tmp)))


def collate_clips(samples: list[dict]) -> dict:
    """Stack readable samples → ``clip`` uint8 ``(B, T, H, W, 3)`` (None if none), ``mos``
    ``(B,)``, ``index`` ``(B,)`` and ``skipped`` (every failed ``(path, reason)``)."""
    good = [s for s in samples if s["clip"] is not None]
    return {
        "clip": torch.stack([s["clip"] for s in good]) if good else None,
        "mos": torch.tensor([float(s["mos"]) for s in good], dtype=torch.float32),
        "index": torch.tensor([s["index"] for s in good], dtype=torch.long),
        "skipped": [entry for s in samples for entry in s["skipped"]],
    }


class EpochSampler(Sampler):
    """Training order: a seeded permutation per epoch, cut into global batches, sharded by rank.

    Yields ``(index, seed)`` pairs: ``seed`` fixes the random sampling of that video in that
    epoch, independent of worker count. Global batch ``k`` holds positions
    ``k·B … (k+1)·B − 1`` of the permutation, rank ``r`` takes its ``B/world`` consecutive
    share, so the order does not depend on the number of processes. Incomplete global batches
    are dropped. ``start_batch`` skips the batches of an epoch already trained (exact resume).
    """

    def __init__(
        self, size: int, global_batch: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size} ranks")
        if size < global_batch:
            raise ValueError(f"{size} training videos are fewer than one batch of {global_batch}")
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.rank, self.local_batch = rank, global_batch // world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.global_batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.local_batch

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        seeds = np.random.default_rng([self.seed, self.epoch, 1]).integers(0, 2**31, self.size)
        for batch in range(self.start_batch, self.batches_per_epoch):
            first = batch * self.global_batch + self.rank * self.local_batch
            for position in range(first, first + self.local_batch):
                yield int(order[position]), int(seeds[position])


class GroupSampler(EpochSampler):
    """:class:`EpochSampler` whose global batches are made of whole groups: each holds every
    video of ``global_batch / group_size`` groups (the same content at several severities), so
    a batch always compares severities of one picture as well as pictures with each other.

    ``groups[i]`` is the group id of video ``i``; groups are cut into chunks of ``group_size``
    videos (a smaller remainder of a group is dropped for the epoch, a larger group gives
    several chunks, drawn in a new order every epoch).
    """

    def __init__(
        self,
        groups: Sequence[int],
        global_batch: int,
        group_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if group_size < 1 or global_batch % group_size:
            raise ValueError(
                f"global batch {global_batch} is not a multiple of the group size {group_size}"
            )
        members: dict[int, list[int]] = {}
        for index, group in enumerate(groups):
            members.setdefault(int(group), []).append(index)
        self.members = [m for _, m in sorted(members.items())]
        self.group_size = group_size
        chunks = sum(len(m) // group_size for m in self.members)
        super().__init__(chunks * group_size, global_batch, seed, rank, world_size)

    def _order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, 2])
        chunks = []
        for members in self.members:
            shuffled = rng.permutation(members)
            usable = len(shuffled) - len(shuffled) % self.group_size
            chunks.extend(shuffled[:usable].reshape(-1, self.group_size))
        return np.concatenate([chunks[i] for i in rng.permutation(len(chunks))])


def split_indices(
    size: int, fraction: float, seed: int | Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(size)`` → ``(rest, held_out)``, ``held_out`` holding
    ``round(fraction·size)`` indices (at least one when ``fraction`` > 0); both sorted."""
    if not 0 <= fraction < 1:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    held = max(1, round(fraction * size)) if fraction > 0 else 0
    order = np.random.default_rng(seed).permutation(size)
    return np.sort(order[held:]), np.sort(order[:held])


def random_splits(
    size: int, num_splits: int = 10, test_fraction: float = 0.2, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The small-set protocol: ``num_splits`` seeded random train/test splits (80/20 default).

    Split ``i`` depends only on ``(seed, i)``, so split 3 is the same whether 5 or 10 are drawn.
    """
    return [split_indices(size, test_fraction, seed=[seed, i]) for i in range(num_splits)]

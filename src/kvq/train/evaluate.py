"""Scoring a labelled set with a model: predictions (sharded over ranks) and their metrics."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from kvq.data.datasets import VideoQualityDataset, collate_clips, random_splits
from kvq.eval.metrics import (
    MetricError,
    QualityMetrics,
    WithinGroupSRCC,
    compute_metrics,
    within_group_srcc,
)
from kvq.runtime import WorkerInit, autocast, current_env, is_distributed
from kvq.train.data import LabelledSet
from kvq.video import ClipSpec, to_model_input


@dataclass
class Predictions:
    """Per-video scores of a set, in label-file order; unreadable videos are in ``skipped``.

    ``label_index``: each scored video's line in the set's ``num_labels`` labels.
    """

    name: str
    paths: list[str]
    mos: np.ndarray
    scores: np.ndarray
    label_index: np.ndarray
    num_labels: int
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def metrics(self, mapping: str = "linear") -> QualityMetrics:
        return compute_metrics(self.scores, self.mos, mapping)

    def subset(self, label_indices: np.ndarray) -> Predictions:
        """The scored videos among the given label lines."""
        keep = np.flatnonzero(np.isin(self.label_index, label_indices))
        return Predictions(
            self.name,
            [self.paths[i] for i in keep],
            self.mos[keep],
            self.scores[keep],
            self.label_index[keep],
            self.num_labels,
        )

    def within_group_metrics(self, groups: dict[str, str]) -> WithinGroupSRCC:
        """Mean SRCC inside the groups of ``{video path: group}`` (the scored videos it does
        not name belong to none)."""
        keep = [i for i, path in enumerate(self.paths) if path in groups]
        if not keep:
            raise MetricError("the groups file names none of the scored videos")
        names = [groups[self.paths[i]] for i in keep]
        return within_group_srcc(self.scores[keep], self.mos[keep], names)

    def split_metrics(
        self,
        num_splits: int = 10,
        test_fraction: float = 0.2,
        seed: int = 0,
        mapping: str = "linear",
    ) -> dict:
        """The small-set protocol: metrics on the test part of each seeded random split
        (the splits ``kvq train`` uses with ``data.split_index``) → mean, std and per split."""
        per_split = [
            self.subset(test).metrics(mapping).as_dict()
            for _, test in random_splits(self.num_labels, num_splits, test_fraction, seed)
        ]
        keys = ("srcc", "plcc", "krcc", "rmse")
        return {
            "mapping": mapping,
            "num_splits": num_splits,
            "test_fraction": test_fraction,
            "seed": seed,
            "mean": {k: float(np.mean([m[k] for m in per_split])) for k in keys},
            "std": {k: float(np.std([m[k] for m in per_split])) for k in keys},
            "splits": per_split,
        }

    def to_csv(self, path: str | Path) -> None:
        """One row per scored video: ``path, mos, prediction``."""
        with Path(path).open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "mos", "prediction"])
            for p, m, s in zip(self.paths, self.mos, self.scores):
                writer.writerow([p, f"{m:.6g}", f"{s:.6g}"])


@torch.no_grad()
def predict(
    model: nn.Module,
    part: LabelledSet,
    spec: ClipSpec,
    device: torch.device,
    batch_size: int = 4,
    num_workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> Predictions:
    """Score every video of ``part`` (deterministic sampling; several clips are averaged).

    Clips go to wherever ``model`` is, in its dtype (:func:`~kvq.video.to_model_input`);
    ``device`` and ``amp_dtype`` choose the autocast (:func:`kvq.runtime.autocast`).

    Under ``torch.distributed`` each rank scores its share and every rank receives all scores.
    """
    env = current_env()
    dataset = VideoQualityDataset(part.labels, part.video_root, spec, train=False)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=list(range(env.rank, len(dataset), env.world_size)),
        num_workers=num_workers,
        collate_fn=collate_clips,
        worker_init_fn=WorkerInit(),
        # An explicit generator keeps the global RNG (dropout, resume) untouched.
        generator=torch.Generator(),
    )
    if progress and env.is_main:
        from tqdm import tqdm

        loader = tqdm(loader, desc=f"scoring {part.name}", unit="batch", leave=False)
    was_training = model.training
    model.eval()
    local: dict[int, float] = {}
    skipped: list[tuple[str, str]] = []
    for batch in loader:
        skipped += batch["skipped"]
        if batch["clip"] is None:
            continue
        clip = batch["clip"]
        clips_per_video = clip.shape[1] if clip.ndim == 6 else 1
        x = to_model_input(clip.flatten(0, 1) if clip.ndim == 6 else clip, model)
        with autocast(device, amp_dtype):
            score = model(x).score.float()
        score = score.reshape(-1, clips_per_video).mean(dim=1).cpu()
        local.update(zip(batch["index"].tolist(), score.tolist()))
    model.train(was_training)
    if is_distributed():
        gathered: list = [None] * env.world_size
        dist.all_gather_object(gathered, (local, skipped))
        local = {k: v for part_scores, _ in gathered for k, v in part_scores.items()}
        skipped = [s for _, part_skipped in gathered for s in part_skipped]
    order = sorted(local)
    return Predictions(
        name=part.name,
        paths=[part.labels[i].path for i in order],
        mos=np.array([part.labels[i].mos for i in order], dtype=np.float64),
        scores=np.array([local[i] for i in order], dtype=np.float64),
        label_index=np.array(order, dtype=np.int64),
        num_labels=len(part.labels),
        skipped=skipped,
    )

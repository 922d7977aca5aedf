"""The labelled videos a training run uses: train, validation and test parts of its sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kvq.data.datasets import split_indices
from kvq.data.labels import VideoLabel, read_video_labels
from kvq.data.registry import DatasetError, resolve_dataset
from kvq.eval.metrics import MIN_SAMPLES
from kvq.train.config import DataSection


@dataclass(frozen=True)
class LabelledSet:
    """Labels of one part of a set and the folder their paths are relative to."""

    name: str
    labels: tuple[VideoLabel, ...]
    video_root: Path


@dataclass(frozen=True)
class RunData:
    train: LabelledSet
    val: LabelledSet
    tests: tuple[LabelledSet, ...]


def load_set(name: str, data: DataSection) -> LabelledSet:
    return load_labelled(name, data.data_root, data.labels_root)


def load_labelled(
    name: str,
    data_root: str | Path,
    labels_root: str | Path | None = None,
    video_root: str | Path | None = None,
) -> LabelledSet:
    """Read the labels of a registered set or label file (see :func:`resolve_dataset`)."""
    source = resolve_dataset(name, data_root, labels_root, video_root)
    labels = tuple(read_video_labels(source.labels_path))
    if not labels:
        raise DatasetError(f"{source.name}: {source.labels_path} lists no videos")
    return LabelledSet(source.name, labels, source.video_root)


def _subset(part: LabelledSet, indices, suffix: str) -> LabelledSet:
    return LabelledSet(
        f"{part.name}{suffix}", tuple(part.labels[i] for i in indices), part.video_root
    )


def build_run_data(data: DataSection) -> RunData:
    """Split the configured sets: the test part never overlaps train or validation.

    With ``split_index`` the training set is first cut into train/test by the seeded random
    split ``split_index`` (its test part is evaluated at the end); validation then comes from
    ``val`` or, held out with ``val_fraction``, from what remains for training.
    """
    train = load_set(data.train, data)
    tests = [load_set(name, data) for name in data.test]
    if data.split_index is not None:
        rest, held = split_indices(
            len(train.labels), data.test_fraction, seed=[data.split_seed, data.split_index]
        )
        tests.insert(0, _subset(train, held, f"[split {data.split_index} test]"))
        train = _subset(train, rest, f"[split {data.split_index} train]")
    if data.val is not None:
        val = load_set(data.val, data)
    else:
        seed = [data.split_seed, data.split_index or 0, 1]
        rest, held = split_indices(len(train.labels), data.val_fraction, seed=seed)
        if len(held) == 0:
            raise DatasetError("no validation videos: set data.val or a positive data.val_fraction")
        val = _subset(train, held, "[val]")
        train = _subset(train, rest, "")
    return RunData(train, val, tuple(tests))


def check_metric_sizes(run: RunData) -> None:
    """Refuse validation and test parts too small for the metrics (:data:`MIN_SAMPLES`
    videos), before any training time is spent: model selection needs validation metrics."""
    for what, part in (("validation", run.val), *(("test", t) for t in run.tests)):
        if len(part.labels) < MIN_SAMPLES:
            raise DatasetError(
                f"{what} set {part.name} has {len(part.labels)} video(s); its metrics need at "
                f"least {MIN_SAMPLES}: give it more videos (kvq synth: more --num-videos)"
            )

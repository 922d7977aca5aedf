"""Registry of labelled video sets: where their videos and label files live under a data root.

A user points ``--data-root`` at their copy of the standard sets, laid out as FAST-VQA expects
(``LSVQ/``, ``KoNViD/``, ``LIVE_VQC/``, ``YouTubeUGC/``, ``KVQ/`` with the videos; label files
named as in FAST-VQA's ``examplar_data_labels``), and names a set::

    source = resolve_dataset("konvid_1k", data_root="/data/vqa")
    source.labels_path, source.video_root, source.mos_range

Label files may live elsewhere (``labels_root``, e.g. a FAST-VQA checkout's
``examplar_data_labels``). Any other set is registered the same way
(:func:`register_dataset`) or given directly as a label file (:func:`resolve_dataset` with a
path ending in ``.txt``/``.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DatasetError(ValueError):
    """An unknown set name, or a set whose label file or video folder is missing."""


@dataclass(frozen=True)
class DatasetSpec:
    """A labelled set, paths relative to the data root (videos) and the labels root.

    ``whole_set``: the set has no official train/test split, so the VQA protocol evaluates it
    with random 80/20 splits (:func:`kvq.data.datasets.random_splits`) when training on it.
    """

    name: str
    label_file: str
    video_dir: str
    mos_range: tuple[float, float]
    whole_set: bool
    description: str = ""


_STANDARD = (
    DatasetSpec(
        "lsvq_train",
        "train_labels.txt",
        "LSVQ",
        (0.0, 100.0),
        False,
        "LSVQ training split (28,056 videos), FAST-VQA's train_labels.txt",
    ),
    DatasetSpec(
        "lsvq_test",
        "LSVQ/labels_test.txt",
        "LSVQ",
        (0.0, 100.0),
        False,
        "LSVQ test split (7,182 videos up to 720p)",
    ),
    DatasetSpec(
        "lsvq_1080p",
        "LSVQ/labels_1080p.txt",
        "LSVQ",
        (0.0, 100.0),
        False,
        "LSVQ 1080p test split (3,573 videos)",
    ),
    DatasetSpec(
        "konvid_1k",
        "KoNViD/labels.txt",
        "KoNViD",
        (1.0, 5.0),
        True,
        "KoNViD-1k (1,200 videos, 540p, 8 s)",
    ),
    DatasetSpec(
        "live_vqc",
        "LIVE_VQC/labels.txt",
        "LIVE_VQC",
        (0.0, 100.0),
        True,
        "LIVE-VQC (585 videos, mobile captures, 10 s)",
    ),
    DatasetSpec(
        "youtube_ugc",
        "YouTubeUGC/labels.txt",
        "YouTubeUGC",
        (1.0, 5.0),
        True,
        "YouTube-UGC (1,380 videos, 360p-4K, 20 s)",
    ),
    DatasetSpec(
        "kvq",
        "KVQ/labels.txt",
        "KVQ",
        (1.0, 5.0),
        True,
        "Kwai KVQ short-video set (NTIRE 2024); convert its train_data.csv "
        "(filename,score) to a path,mos CSV or a FAST-VQA label file",
    ),
)

_REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in _STANDARD}


def register_dataset(spec: DatasetSpec, overwrite: bool = False) -> None:
    """Add a custom set so that it can be named like the standard ones."""
    if spec.name in _REGISTRY and not overwrite:
        raise DatasetError(f"dataset {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; registered: {', '.join(list_datasets())} "
            "(or give a label file path)"
        ) from None


@dataclass(frozen=True)
class DataSource:
    """A set ready to load: its label file, the folder its video paths are relative to."""

    name: str
    labels_path: Path
    video_root: Path
    mos_range: tuple[float, float] | None = None
    whole_set: bool = True


def resolve_dataset(
    name_or_labels: str,
    data_root: str | Path = ".",
    labels_root: str | Path | None = None,
    video_root: str | Path | None = None,
) -> DataSource:
    """A registered set's (or a label file's) :class:`DataSource`, checked to exist.

    A registered name resolves to ``labels_root/label_file`` (``labels_root`` defaults to
    ``data_root``) and ``data_root/video_dir``. Anything ending in ``.txt`` or ``.csv`` is a
    label file of a custom set whose videos lie under ``video_root`` (default: ``data_root``).
    """
    data_root = Path(data_root).expanduser()
    if name_or_labels.endswith((".txt", ".csv")):
        labels = Path(name_or_labels).expanduser()
        source = DataSource(labels.stem, labels, Path(video_root or data_root).expanduser())
    else:
        spec = get_dataset_spec(name_or_labels)
        labels = Path(labels_root or data_root).expanduser() / spec.label_file
        videos = Path(video_root).expanduser() if video_root else data_root / spec.video_dir
        source = DataSource(spec.name, labels, videos, spec.mos_range, spec.whole_set)
    if not source.labels_path.is_file():
        raise DatasetError(f"{source.name}: label file {source.labels_path} not found")
    if not source.video_root.is_dir():
        raise DatasetError(f"{source.name}: video folder {source.video_root} not found")
    return source

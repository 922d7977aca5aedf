"""The LPVQ zero-shot protocol (docs/lpvq.md): labelled images → model grids → metrics.

Each image becomes a static clip (``frames`` copies of the picture, resized to ``size``, aspect
ratio not kept so that the 7×7 label grid and the model's grid cover the same regions; or, for
fragment-trained weights, one native-resolution fragment per label cell); the
model's local quality map Q is averaged over time and pooled to 7×7 by
:func:`kvq.lpvq.grid.local_grid` (2×2 average pool from the 14×14 map of a 448 input, adaptive
average pooling for other sizes); the 49 cells are compared row-major with the labelled cells by
:func:`kvq.lpvq.metrics.lpvq_metrics`.

Several weights ("variants", e.g. IWA / CWA / FWA) are evaluated on the same images: an image
that any variant cannot read is skipped for all of them, so every row of the comparison uses the
same cells.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kvq.lpvq.grid import LPVQ_GRID, local_grid
from kvq.lpvq.metrics import LpvqMetrics, lpvq_metrics
from kvq.runtime import resolve_device
from kvq.scoring.predictor import Predictor, load
from kvq.video import ClipSpec, VideoError, load_clip

PAPER_FRAMES = 16
PAPER_SIZE = 448


class LpvqEvalError(ValueError):
    """An LPVQ evaluation that cannot run: bad options, or no labelled image could be read."""


LPVQ_VIEWS = ("resize", "fragments")


@dataclass(frozen=True)
class LpvqProtocol:
    """How an image becomes a clip: ``frames`` copies of it, seen through ``view``.

    - ``"resize"`` (the paper): the picture stretched to ``size``² (None: the weights' own
      input size), so the model's grid covers the same regions as the label grid.
    - ``"fragments"``: for weights trained on FAST-VQA fragments, the view they were trained
      on: a 7×7 grid of native-resolution patches, one centred in each label cell, so output
      cell (r, c) sees only label cell (r, c). Its side is 7 × the weights' fragment size, so
      ``size`` must be None.
    """

    frames: int = PAPER_FRAMES
    size: int | None = PAPER_SIZE
    view: str = "resize"

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise LpvqEvalError(f"frames must be >= 1, got {self.frames}")
        if self.size is not None and self.size < 1:
            raise LpvqEvalError(f"size must be >= 1 (or None), got {self.size}")
        if self.view not in LPVQ_VIEWS:
            raise LpvqEvalError(f"view must be one of {LPVQ_VIEWS}, got {self.view!r}")
        if self.view == "fragments" and self.size is not None:
            raise LpvqEvalError(
                "the fragments view has no size of its own (7 × the weights' fragment size); "
                "leave the size native"
            )

    def clip_spec(self, weights_spec: ClipSpec) -> ClipSpec:
        """The weights' input spec with this protocol's frames, size and view."""
        still = dict(image_frames=self.frames, num_clips=1)
        if self.view == "fragments":
            return dataclasses.replace(
                weights_spec, view="fragments", fragment_grid=LPVQ_GRID, **still
            )
        # output_size, not size: weights trained on fragments saw grid·fragment pixels
        size = weights_spec.output_size if self.size is None else (self.size, self.size)
        return dataclasses.replace(weights_spec, size=size, view="resize", **still)


@dataclass
class Variant:
    """One row of the comparison: a name, the weights it came from and the clip it is fed."""

    name: str
    weights: str
    predictor: Predictor
    spec: ClipSpec

    @property
    def attention(self) -> str:
        return self.predictor.model.config.attention


@dataclass(frozen=True)
class Skipped:
    """A labelled image left out of the evaluation, and why."""

    name: str
    reason: str


@dataclass
class LpvqRun:
    """Everything one evaluation produced.

    ``labels`` and every ``grids[variant]`` hold exactly the used images (file order);
    ``metrics[variant]`` are computed on them.
    """

    protocol: LpvqProtocol
    variants: list[Variant]
    labels: dict[str, np.ndarray]
    grids: dict[str, dict[str, np.ndarray]]
    metrics: dict[str, LpvqMetrics]
    skipped: list[Skipped]
    num_labelled: int


def variant_names(weights: Sequence[str], names: Sequence[str] | None) -> list[str]:
    """``names`` when given (one per weights, unique), else the weights' file stems made unique."""
    if names:
        if len(names) != len(weights):
            raise LpvqEvalError(f"{len(names)} names for {len(weights)} weights")
        if len(set(names)) != len(names):
            raise LpvqEvalError(f"variant names must be unique: {list(names)}")
        return list(names)
    out: list[str] = []
    for w in weights:
        stem = Path(w).stem
        name, n = stem, 1
        while name in out:
            n += 1
            name = f"{stem}-{n}"
        out.append(name)
    return out


def load_variants(
    weights: Sequence[str],
    names: Sequence[str] | None = None,
    protocol: LpvqProtocol | None = None,
    device: str | torch.device = "auto",
    arch: str = "kvq-t",
) -> list[Variant]:
    """Load every weights file (``arch`` for foreign checkpoints without a config) onto
    ``device`` (:func:`kvq.runtime.resolve_device`).

    Raises :class:`kvq.models.WeightsError` for unreadable weights, :class:`LpvqEvalError`
    for bad names, :class:`kvq.runtime.DeviceError` for a device that is not there.
    """
    protocol = protocol or LpvqProtocol()
    device = resolve_device(device)
    variants = []
    for name, w in zip(variant_names(weights, names), weights):
        predictor = load(w, device=device, arch=arch)
        variants.append(Variant(name, str(w), predictor, protocol.clip_spec(predictor.spec)))
    return variants


def predict_image(variants: Sequence[Variant], path: Path) -> dict[str, np.ndarray]:
    """``{variant name: (7, 7) grid}`` of one image; decodes once per distinct clip spec.

    Raises :class:`kvq.video.VideoError` when the file cannot be read.
    """
    clips = {}
    grids = {}
    for v in variants:
        if v.spec not in clips:
            clips[v.spec] = load_clip(path, v.spec)
        _, quality, _ = v.predictor.forward(clips[v.spec][None])
        # float64 before pooling: near-equal cells must not swap ranks through rounding
        grids[v.name] = local_grid(quality[0].astype(np.float64))
    return grids


def evaluate(
    variants: Sequence[Variant],
    images_dir: str | Path,
    labels: Mapping[str, np.ndarray],
    protocol: LpvqProtocol | None = None,
    progress: bool = False,
) -> LpvqRun:
    """Predict the 7×7 grid of every labelled image (``images_dir / name``) with every variant
    and compute the LPVQ metrics on the images all variants could read.

    Missing and unreadable images are recorded in ``skipped``; raises :class:`LpvqEvalError`
    when none is left.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise LpvqEvalError(f"{images_dir}: no such folder of images")
    if not variants:
        raise LpvqEvalError("no weights to evaluate")
    grids: dict[str, dict[str, np.ndarray]] = {v.name: {} for v in variants}
    used: dict[str, np.ndarray] = {}
    skipped = []
    for name in tqdm(labels, desc="lpvq", unit="image", disable=not progress):
        path = images_dir / name
        if not path.is_file():
            skipped.append(Skipped(name, f"not found in {images_dir}"))
            continue
        try:
            predicted = predict_image(variants, path)
        except VideoError as err:
            skipped.append(Skipped(name, f"unreadable: {err}"))
            continue
        used[name] = np.asarray(labels[name], dtype=np.float64)
        for variant, grid in predicted.items():
            grids[variant][name] = grid
    if not used:
        raise LpvqEvalError(
            f"none of the {len(labels)} labelled images could be used "
            f"({len(skipped)} missing or unreadable under {images_dir})"
        )
    metrics = {v.name: lpvq_metrics(grids[v.name], used) for v in variants}
    return LpvqRun(
        protocol=protocol or LpvqProtocol(),
        variants=list(variants),
        labels=used,
        grids=grids,
        metrics=metrics,
        skipped=skipped,
        num_labelled=len(labels),
    )

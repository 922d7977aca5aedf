"""Typed training configuration, loaded from YAML (``kvq train CONFIG.yaml``).

Every section is a dataclass whose defaults are the paper's recipe (docs/design.md,
*Training*); a YAML file only states what differs. Unknown keys and wrong types fail with
:class:`ConfigError` naming the key, so a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import yaml

from kvq.train.losses import LossConfig
from kvq.video import ClipSpec


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class ModelSection:
    """``arch`` and :class:`~kvq.models.KVQConfig` ``overrides``; ``pretrained``: Kinetics-400
    Video Swin-T ``.pth``, KVQ weights, or ``efficientnet-lite0-imagenet`` (the packaged
    ImageNet weights of the ``kvq-lite`` stem), loaded before training (None: random init).
    ``freeze_stem``: keep a ``kvq-lite`` stem fixed (weights and BatchNorm statistics)."""

    arch: str = "kvq-t"
    overrides: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    grad_checkpointing: bool = False
    freeze_stem: bool = False

    def __post_init__(self) -> None:
        # Overrides are KVQConfig fields, typed and checked here: a typo is a config error
        # naming the valid keys, not a TypeError when the model is built.
        from kvq.models import get_config, list_models
        from kvq.models.kvq import KVQConfig

        if self.arch not in list_models():
            raise ConfigError(f"model.arch: unknown {self.arch!r}; known: {list_models()}")
        hints = typing.get_type_hints(KVQConfig)
        names = {f.name for f in dataclasses.fields(KVQConfig) if f.init}
        runtime = sorted(set(self.overrides) & KVQConfig.LEGACY_FIELDS)
        if runtime:
            raise ConfigError(
                f"model.overrides: {runtime} are runtime settings, not architecture "
                "(gradient checkpointing: model.grad_checkpointing)"
            )
        unknown = sorted(set(self.overrides) - names)
        if unknown:
            raise ConfigError(
                f"model.overrides: unknown key(s) {unknown}; KVQConfig fields: {sorted(names)}"
            )
        typed = {
            key: _convert(hints[key], value, f"model.overrides.{key}")
            for key, value in self.overrides.items()
        }
        try:
            get_config(self.arch, **typed)  # values the architecture refuses, refused now
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.overrides: {err}") from None
        object.__setattr__(self, "overrides", typed)


@dataclass(frozen=True)
class DataSection:
    """Which sets to train, select and test on (registry names or label-file paths).

    ``val``: a separate validation set; without one, ``val_fraction`` of the training set is
    held out (seeded). ``split_index``: for sets without an official split, train on split
    ``i`` of the seeded random ``1 − test_fraction`` / ``test_fraction`` splits and test on its
    held-out part (the 10-split protocol runs ``i = 0…9``). ``test``: sets evaluated with the
    selected model at the end. ``cache_dir``: decode each training video once (see
    :class:`~kvq.data.datasets.VideoQualityDataset`).

    ``train_groups``: a group file (``path,group`` CSV, :func:`~kvq.data.labels.read_groups`)
    of the training videos; every global batch then holds whole groups of ``group_size``
    videos (the same content at several severities), ranked inside each group by
    ``loss.group_rank_weight``. ``stem_cache_views`` > 0 (with ``model.freeze_stem``): compute
    the frozen stem's output for that many random views of every training video once, and
    train on them (:mod:`kvq.train.stem_cache`). ``train_local``: region labels of training
    videos (an LPVQ label file, :func:`~kvq.data.labels.read_lpvq_labels`) for
    ``loss.local_label_weight``; videos it does not list have none.

    Label-file paths (and ``labels_root``, ``train_groups``, ``train_local``) are relative to
    the current folder; a ``data_root`` override (``kvq train --data-root``) moves those below
    the file's ``data_root`` with it (:func:`move_data_paths`).
    """

    data_root: str = "."
    labels_root: str | None = None
    train: str = "lsvq_train"
    val: str | None = None
    val_fraction: float = 0.05
    test: tuple[str, ...] = ()
    split_index: int | None = None
    split_seed: int = 0
    test_fraction: float = 0.2
    clip: ClipSpec = field(default_factory=ClipSpec)
    num_workers: int = 4
    cache_dir: str | None = None
    score_range: tuple[float, float] | None = None
    score_scale: str = "MOS"
    train_groups: str | None = None
    train_local: str | None = None
    group_size: int = 4
    stem_cache_views: int = 0


@dataclass(frozen=True)
class OptimSection:
    """AdamW with warm-up + cosine per step; ``batch_size`` is the global batch (all ranks).
    ``stem_lr_mult``: learning rate of a pretrained stem that is not frozen, as a multiple of
    ``lr`` (None: the backbone's)."""

    lr: float = 5e-4
    backbone_lr_mult: float = 0.1
    stem_lr_mult: float | None = None
    weight_decay: float = 0.05
    warmup_epochs: float = 2.5
    epochs: int = 30
    batch_size: int = 16
    ema_decay: float = 0.999
    grad_clip: float | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``kvq train`` needs. ``precision``: ``auto`` (bf16 autocast on GPUs that
    support it, else fp16; always fp32 on CPU), ``fp32``, ``bf16`` or ``fp16``.
    ``checkpoint_every``: steps between resumable checkpoints (0: at epoch ends only).
    ``max_steps``: stop (with a checkpoint) after this many steps, e.g. for a time budget.
    ``deterministic``: deterministic kernels (a CPU run then repeats bit for bit; on GPUs it
    costs speed and only warns where an op has no deterministic version)."""

    output_dir: str = "runs/kvq"
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossConfig = field(default_factory=LossConfig)
    eval_every: int = 1
    checkpoint_every: int = 0
    max_steps: int | None = None
    deterministic: bool = True
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if self.optim.batch_size < 2:
            raise ConfigError("optim.batch_size must be >= 2 (the batch losses compare videos)")
        if self.eval_every < 1 or self.log_every < 1 or self.checkpoint_every < 0:
            raise ConfigError("eval_every and log_every must be >= 1, checkpoint_every >= 0")
        if self.data.stem_cache_views < 0:
            raise ConfigError("data.stem_cache_views must be >= 0")
        if self.data.stem_cache_views and not self.model.freeze_stem:
            raise ConfigError("data.stem_cache_views needs model.freeze_stem: true")
        if self.loss.group_rank_weight and self.data.train_groups is None:
            raise ConfigError("loss.group_rank_weight needs data.train_groups (a group file)")
        if self.loss.local_label_weight and self.data.train_local is None:
            raise ConfigError("loss.local_label_weight needs data.train_local (region labels)")
        if self.data.train_groups is not None and self.optim.batch_size % self.data.group_size:
            raise ConfigError(
                f"optim.batch_size {self.optim.batch_size} must be a multiple of "
                f"data.group_size {self.data.group_size}"
            )

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    """Tuples → lists (for YAML/JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _convert(annotation: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, where)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, where) if len(options) == 1 else value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = [value] if isinstance(value, str) else value
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_convert(item, v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is float:
        # PyYAML reads exponents without a dot (5e-4) as strings.
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if annotation in (int, str, bool) and not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    return value


def _build(cls: type, values: Any, where: str) -> Any:
    if isinstance(values, cls):
        return values
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {
        key: _convert(hints[key], value, f"{where}.{key}" if where else key)
        for key, value in values.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or 'config'}: {err}") from None


def config_from_dict(values: dict) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested plain values (parsed YAML)."""
    return _build(TrainConfig, values, "")


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML config; ``overrides`` (nested dict) are merged on top of the file.

    An override of ``data.data_root`` moves the file's data paths that lie under its own
    ``data_root`` along (:func:`move_data_paths`), unless they are overridden too."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: {err}") from None
    overrides = overrides or {}
    new_root = (overrides.get("data") or {}).get("data_root")
    if new_root is not None and isinstance(values, dict) and isinstance(values.get("data"), dict):
        values = {**values, "data": move_data_paths(values["data"], str(new_root))}
    return config_from_dict(merge_dicts(values, overrides))


# Data paths that move with data_root: label files (registered set names are left alone),
# the folder of registered sets' label files, and the group file.
_MOVING_PATHS = ("labels_root", "train", "val", "test", "train_groups", "train_local")


def move_data_paths(data: dict, new_root: str) -> dict:
    """``data`` (a config's data section) with ``data_root`` set to ``new_root`` and every
    data path that starts with the old ``data_root`` moved below ``new_root``:
    ``data/synth/labels/val.txt`` → ``NEW/labels/val.txt`` when ``data_root`` was
    ``data/synth``. Paths elsewhere stay; an old ``data_root`` of ``.`` (or none) moves
    nothing, since every relative path would lie under it."""
    old_root = data.get("data_root")
    moved = {**data, "data_root": new_root}
    if not isinstance(old_root, str) or os.path.normpath(old_root) == ".":
        return moved
    old = PurePath(os.path.normpath(old_root))

    def move(value: Any, key: str) -> Any:
        if not isinstance(value, str):
            return value
        if key in ("train", "val", "test") and not value.endswith((".txt", ".csv")):
            return value  # a registered set name, not a path
        inner = PurePath(os.path.normpath(value))
        if inner.parts[: len(old.parts)] != old.parts:
            return value
        return str(PurePath(new_root, *inner.parts[len(old.parts) :]))

    for key in _MOVING_PATHS:
        value = data.get(key)
        if isinstance(value, list | tuple):
            moved[key] = [move(v, key) for v in value]
        elif value is not None:
            moved[key] = move(value, key)
    return moved


def parse_override(text: str) -> dict:
    """``"optim.lr=3e-4"`` → ``{"optim": {"lr": 3e-4}}``: a dotted key and a YAML value."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: {err}") from None
    for part in reversed(parts):
        value = {part: value}
    return value


def merge_dicts(base: dict, extra: dict) -> dict:
    """``extra`` merged into a copy of ``base``, nested dicts key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out

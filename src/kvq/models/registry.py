"""Named architectures. Every entry is a :class:`KVQConfig`; all share one implementation."""

from __future__ import annotations

import dataclasses

from kvq.models.kvq import KVQConfig, KVQModel

MODEL_CONFIGS: dict[str, KVQConfig] = {
    # The paper's model: Video Swin-T widths, FWA in stages 3 and 4.
    "kvq-t": KVQConfig(),
    # Half the width and a third of the stage-3 blocks: for CPU training and inference.
    "kvq-xs": KVQConfig(embed_dim=48, depths=(2, 2, 2, 2)),
    # ImageNet EfficientNet-Lite0 (per frame, its stride-16 features and the block statistics
    # of its stride-2/4/8 stages) instead of the patch embedding and stages 1–2, then Fusion
    # Window stages 3–4 at 96/192 channels: the CPU default.
    "kvq-lite": KVQConfig(
        stem="efficientnet-lite0",
        stem_strides=(2, 4, 8, 16),
        embed_dim=24,
        depths=(0, 0, 2, 2),
        num_heads=(3, 6, 3, 6),
    ),
}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(MODEL_CONFIGS)


def get_config(arch: str = "kvq-t", **overrides) -> KVQConfig:
    """The registered config of ``arch`` with ``overrides`` applied (lists become tuples)."""
    if arch not in MODEL_CONFIGS:
        raise ValueError(f"unknown architecture {arch!r}; available: {', '.join(list_models())}")
    base = MODEL_CONFIGS[arch].to_dict()
    runtime = sorted(set(overrides) & KVQConfig.LEGACY_FIELDS)
    if runtime:
        raise TypeError(
            f"{runtime} are runtime settings, not architecture: build the model, then "
            "model.set_runtime(...)"
        )
    unknown = set(overrides) - set(base)
    if unknown:
        fields = ", ".join(f.name for f in dataclasses.fields(KVQConfig))
        raise TypeError(f"unknown override(s) {sorted(unknown)}; KVQConfig fields: {fields}")
    return KVQConfig.from_dict({**base, **overrides})


def build_model(arch: str = "kvq-t", **overrides) -> KVQModel:
    """Build a randomly initialised KVQ model, e.g. ``build_model("kvq-t", attention="iwa")``.

    Overrides are :class:`KVQConfig` fields: ``attention``, ``topk``, ``embed_dim``, ``depths``,
    ``num_heads``, ``multiscale_saliency``, … Runtime settings
    (:class:`~kvq.models.kvq.RuntimeOptions`) are set on the built model:
    ``build_model("kvq-t").set_runtime(grad_checkpointing=True)``.
    """
    return KVQModel(get_config(arch, **overrides))

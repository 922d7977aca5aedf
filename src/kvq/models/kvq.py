"""KVQ: saliency-weighted local quality on Video Swin (docs/design.md, *Heads and score*).

The backbone's final features ``F`` ``(B, C, T', H', W')`` feed two heads: a local quality map
``Q`` and a raw saliency map ``S̃``. The saliency priors of the Fusion Window blocks (stage 3
priors average-pooled 2×2 onto the final grid, stage 4 priors as they are) are fused by a
zero-initialised ``1×1×1`` convolution and added to ``S̃``; a softmax over the ``H'·W'`` cells of
each time slice, times ``H'·W'``, gives ``S``. The score is the mean of ``Q·S``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kvq.models.lite_backbone import STEM_STRIDE, LiteBackbone
from kvq.models.swin3d import DEFAULT_PRIOR_CHUNK, SwinTransformer3D, check_prior_options

ATTENTIONS = ("iwa", "cwa", "fwa")
# "patch": Video Swin's patch embedding and all four stages (kvq-t). "efficientnet-lite0": a
# per-frame ImageNet CNN replaces the patch embedding and stages 1–2 (kvq-lite; their depths
# are 0).
STEMS = ("patch", "efficientnet-lite0")
_STEM_STAGES = {"patch": 0, "efficientnet-lite0": 2}  # stages each stem replaces


@dataclass(frozen=True)
class KVQConfig:
    """Architecture of a KVQ model; every field can be overridden in :func:`build_model`.

    ``fusion_stages`` are the stages whose blocks use ``attention`` and yield saliency priors
    (stages 3 and 4 in the paper, 0-based ``(2, 3)``); ``topk`` has one entry per fusion stage.
    ``stem`` is one of :data:`STEMS`; the stages a stem replaces have depth 0. ``stem_strides``
    (a CNN stem only): the output strides whose features make a token, always ending at 16;
    finer ones add their block statistics (:class:`~kvq.models.lite_backbone.FrameStem`). How
    a built model computes (not what) is its :class:`RuntimeOptions`, set with
    :meth:`KVQModel.set_runtime`.
    """

    # Runtime settings that weights files written before RuntimeOptions hold in their "model"
    # section: read and dropped (they never changed what the model computes).
    LEGACY_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"prior_chunk", "prior_impl", "grad_checkpointing"}
    )

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int, int] = (8, 7, 7)
    patch_size: tuple[int, int, int] = (2, 4, 4)
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    attention: str = "fwa"
    fusion_stages: tuple[int, ...] = (2, 3)
    topk: tuple[int, ...] = (8, 4)
    multiscale_saliency: bool = True
    head_hidden: int = 64
    head_dropout: float = 0.5
    stem: str = "patch"
    stem_strides: tuple[int, ...] = (STEM_STRIDE,)

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.stem == "patch" and tuple(self.stem_strides) != (STEM_STRIDE,):
            raise ValueError("stem_strides apply to a CNN stem only; the patch stem has none")
        replaced = _STEM_STAGES[self.stem]
        if any(self.depths[:replaced]) or not all(self.depths[replaced:]):
            raise ValueError(
                f"stem {self.stem!r} replaces the first {replaced} stage(s): their depths must "
                f"be 0 and the others positive, got depths {self.depths}"
            )
        if any(s < replaced for s in self.fusion_stages):
            raise ValueError(
                f"fusion_stages {self.fusion_stages} include a stage the stem replaces"
            )
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if not (len(self.depths) == len(self.num_heads)):
            raise ValueError("depths and num_heads need one entry per stage")
        if len(self.topk) != len(self.fusion_stages):
            raise ValueError("topk needs one entry per fusion stage")
        if any(not 0 <= s < len(self.depths) for s in self.fusion_stages):
            raise ValueError(
                f"fusion_stages {self.fusion_stages} outside 0..{len(self.depths) - 1}"
            )
        for i, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2**i) % heads:
                raise ValueError(
                    f"stage {i}: width {self.embed_dim * 2**i} not divisible by {heads}"
                )

    @property
    def num_priors(self) -> int:
        """Number of saliency priors fused into the saliency map (8 for ``kvq-t``)."""
        return sum(self.depths[s] for s in self.fusion_stages)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> KVQConfig:
        """Inverse of :meth:`to_dict`; lists (from JSON/YAML) become tuples, unknown keys fail
        and :attr:`LEGACY_FIELDS` are dropped."""
        values = {k: v for k, v in values.items() if k not in cls.LEGACY_FIELDS}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown KVQConfig fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class RuntimeOptions:
    """How a built :class:`KVQModel` computes, never what: not architecture, so not in
    :class:`KVQConfig` nor in weights files. Set with :meth:`KVQModel.set_runtime`.

    ``prior_impl``: ``"chunked"`` (softmax over query chunks of ``prior_chunk`` rows) or
    ``"fused"`` (two fused-kernel passes; chunked where the kernel is missing), see
    :func:`~kvq.models.swin3d.saliency_prior`. ``grad_checkpointing``: recompute each block
    in the backward pass instead of storing its activations.
    """

    prior_impl: str = "chunked"
    prior_chunk: int = DEFAULT_PRIOR_CHUNK
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        check_prior_options(self.prior_impl, self.prior_chunk)
        if not isinstance(self.grad_checkpointing, bool):
            raise ValueError(f"grad_checkpointing must be a bool, got {self.grad_checkpointing!r}")


@dataclass
class KVQOutput:
    """Result of :meth:`KVQModel.forward`.

    ``score`` ``(B,)``; ``local_quality`` (Q) and ``saliency`` (S) ``(B, T', H', W')`` with
    ``T' = T/2``, ``H' = H/32``, ``W' = W/32``; ``priors`` ``(B, P, T', H', W')`` the block
    priors on the output grid (empty along P when the multi-scale prior is off).
    """

    score: Tensor
    local_quality: Tensor
    saliency: Tensor
    priors: Tensor = field(repr=False)


class QualityHead(nn.Sequential):
    """Per-cell regression ``Dropout → Conv 1×1×1 → GELU → Dropout → Conv 1×1×1``.

    ``(B, C, T, H, W)`` → ``(B, 1, T, H, W)``. Names follow FAST-VQA's VQA head.
    """

    def __init__(self, in_channels: int, hidden: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout_in = nn.Dropout(dropout)
        self.fc_hid = nn.Conv3d(in_channels, hidden, kernel_size=1)
        self.gelu = nn.GELU()
        self.dropout_hid = nn.Dropout(dropout)
        self.fc_last = nn.Conv3d(hidden, 1, kernel_size=1)


class KVQModel(nn.Module):
    """Backbone + quality head + saliency head + fusion of the saliency priors."""

    def __init__(self, config: KVQConfig) -> None:
        super().__init__()
        self.config = config
        n_stages = len(config.depths)
        attention = ["iwa"] * n_stages
        topk = [0] * n_stages
        prior_stages = [False] * n_stages
        for stage, k in zip(config.fusion_stages, config.topk):
            attention[stage], topk[stage] = config.attention, k
            prior_stages[stage] = config.multiscale_saliency
        first = _STEM_STAGES[config.stem]  # stages from here on are built as Swin stages
        swin = {
            "depths": config.depths[first:],
            "num_heads": config.num_heads[first:],
            "window_size": config.window_size,
            "mlp_ratio": config.mlp_ratio,
            "drop_path_rate": config.drop_path_rate,
            "attention": attention[first:],
            "topk": topk[first:],
            "prior_stages": prior_stages[first:],
        }
        if config.stem == "patch":
            self.backbone = SwinTransformer3D(
                embed_dim=config.embed_dim, patch_size=config.patch_size, **swin
            )
        else:
            self.backbone = LiteBackbone(
                config.embed_dim * 2**first, tuple(config.stem_strides), **swin
            )
        width = self.backbone.num_features
        self.quality_head = QualityHead(width, config.head_hidden, config.head_dropout)
        self.saliency_head = QualityHead(width, config.head_hidden, config.head_dropout)
        self.prior_fusion = None
        if config.multiscale_saliency:
            # Zero-initialised: training starts from the saliency head alone and learns how much
            # each block's prior should contribute.
            self.prior_fusion = nn.Conv3d(config.num_priors, 1, kernel_size=1)
            nn.init.zeros_(self.prior_fusion.weight)
            nn.init.zeros_(self.prior_fusion.bias)
        self.runtime = RuntimeOptions()
        self.set_runtime()  # the defaults reach the backbone the way every later change does

    def set_runtime(self, **changes: Any) -> KVQModel:
        """Change :class:`RuntimeOptions` fields, e.g. ``model.set_runtime(prior_impl="fused",
        grad_checkpointing=True)``; the others keep their values. Returns the model."""
        runtime = dataclasses.replace(self.runtime, **changes)  # validates, refuses unknown names
        self.backbone.set_grad_checkpointing(runtime.grad_checkpointing)
        self.backbone.set_prior_options(runtime.prior_impl, runtime.prior_chunk)
        self.runtime = runtime
        return self

    def local_quality(self, x: Tensor) -> Tensor:
        """Quality map alone, ``(B, 3, T, H, W)`` → ``(B, T', H', W')`` (no saliency, no priors:
        the Local Perception Constraint runs every cube through this)."""
        return self.local_quality_embedded(self.backbone.embed(x))

    def local_quality_embedded(self, e: Tensor) -> Tensor:
        """:meth:`local_quality` from the backbone's :meth:`embed` output."""
        return self.quality_head(self.backbone.forward_embedded(e)[0])[:, 0]

    def forward(self, x: Tensor) -> KVQOutput:
        """x ``(B, 3, T, H, W)``, normalised RGB → :class:`KVQOutput`."""
        return self.forward_embedded(self.backbone.embed(x))

    def forward_embedded(self, e: Tensor) -> KVQOutput:
        """:meth:`forward` from the backbone's :meth:`embed` output (a frozen stem's output can
        be cached and fed here)."""
        need_priors = self.prior_fusion is not None
        features, priors = self.backbone.forward_embedded(e, need_priors)
        quality = self.quality_head(features)[:, 0]
        saliency_logits = self.saliency_head(features)[:, 0]
        grid = features.shape[2:]
        if self.prior_fusion is not None:
            stacked = torch.stack([_to_grid(p, grid) for p in priors], dim=1)  # (B, P, T', H', W')
            saliency_logits = saliency_logits + self.prior_fusion(stacked.to(features.dtype))[:, 0]
        else:
            stacked = features.new_zeros(features.shape[0], 0, *grid)
        b, t, h, w = saliency_logits.shape
        saliency = saliency_logits.reshape(b, t, h * w).softmax(-1).reshape(b, t, h, w) * (h * w)
        score = (quality * saliency).mean(dim=(1, 2, 3))
        return KVQOutput(score, quality, saliency, stacked)


def _to_grid(prior: Tensor, grid: torch.Size) -> Tensor:
    """Average-pool a block prior ``(B, D, H, W)`` onto the output grid ``(T', H', W')``.

    Stage-3 priors are twice the final size: 2×2 pooling, ``ceil_mode`` so that odd sizes
    (which PatchMerging pads) give the same grid; a partial window averages its real cells.
    """
    if tuple(prior.shape[1:]) == tuple(grid):
        return prior
    kernel = (
        prior.shape[1] // grid[0],
        -(-prior.shape[2] // grid[1]),
        -(-prior.shape[3] // grid[2]),
    )
    pooled = F.avg_pool3d(prior.unsqueeze(1), kernel, ceil_mode=True)[:, 0]
    if tuple(pooled.shape[1:]) != tuple(grid):
        raise RuntimeError(f"prior grid {tuple(prior.shape[1:])} does not pool to {tuple(grid)}")
    return pooled

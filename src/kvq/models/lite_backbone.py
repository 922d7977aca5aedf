"""The ``kvq-lite`` backbone: an ImageNet-pretrained CNN as the early, local stages, then KVQ's
Fusion Window stages.

KVQ's first two stages only extract localised high-frequency features; the paper takes them
from an existing backbone. Here EfficientNet-Lite0, applied to every frame, replaces the patch
embedding and stages 1–2: its stride-16 features (with ``stem_strides``, also the block
statistics of its finer stages) of two consecutive frames are concatenated and projected into
one token, giving the same token grid as stage 3 of Video Swin
``(T/2, H/16, W/16)``. Stages 3–4 (Fusion Window Attention, saliency priors), the final norm and
everything after the backbone are those of ``kvq-t``.

The backbone is split in two so that a frozen stem can be computed once and cached:
:meth:`LiteBackbone.embed` (the per-frame CNN) and :meth:`LiteBackbone.forward_embedded`
(everything trainable after it).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kvq.models.efficientnet_lite import EfficientNetLite, fuse_batchnorm
from kvq.models.swin3d import SwinTransformer3D, _init_weights
from kvq.video.clip import MEAN, STD

STEM_STRIDE = 16


class FrameStem(nn.Module):
    """EfficientNet-Lite0 up to stride 16, frame by frame.

    ``(B, 3, T, H, W)`` normalised as every kvq input (ImageNet mean/std) →
    ``(B, T, C, ⌈H/16⌉, ⌈W/16⌉)``: the 112 stride-16 channels, then, for every finer stride of
    ``strides`` (2, 4 or 8), the mean and standard deviation of that map's channels over each
    16×16-pixel block — the local statistics (noise, sharpness, blocking) that deeper layers
    abstract away, as Video Swin's patch merging carries stage 1–2 detail into stage-3 tokens.
    The input is first mapped to the CNN's own scaling ``(RGB − 127) / 128``. With ``frozen``
    the stem keeps its BatchNorm statistics in training mode too (its parameters are then
    excluded from the optimiser by whoever freezes it).
    """

    def __init__(self, strides: tuple[int, ...] = (STEM_STRIDE,)) -> None:
        super().__init__()
        if strides[-1] != STEM_STRIDE or list(strides) != sorted(set(strides)):
            raise ValueError(
                f"stem strides must ascend without repeats and end at {STEM_STRIDE}, got {strides}"
            )
        self.net = EfficientNetLite()
        self.net.truncate(STEM_STRIDE)
        self.strides = tuple(strides)
        finer = sum(self.net.feature_channels(s) for s in strides[:-1])
        self.channels = self.net.feature_channels(STEM_STRIDE) + 2 * finer
        self.frozen = False
        self.channels_last = False

    def freeze(self) -> None:
        self.frozen = True
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrameStem:
        return super().train(mode and not self.frozen)

    def inference_copy(self) -> FrameStem:
        """A frozen copy for fast inference: BatchNorm folded into the convolutions, channels-last
        memory (together ~2.5× faster on a CPU). Its weights are derived: train and save the
        original."""
        fast = copy.copy(self)  # shares nothing that changes: the net is replaced below
        fast._modules = dict(self._modules)
        fast.net = fuse_batchnorm(self.net).to(memory_format=torch.channels_last)
        fast.channels_last = True
        fast.freeze()
        return fast

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        # (x·std + mean − 127) / 128: kvq's input normalisation → the CNN's own scaling.
        std, mean = x.new_tensor(STD).view(1, 3, 1, 1), x.new_tensor(MEAN).view(1, 3, 1, 1)
        frames = x.transpose(1, 2).reshape(b * t, 3, h, w) * (std / 128) + (mean - 127) / 128
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        *finer, features = self.net.feature_maps(frames, self.strides)
        if finer:
            grid = features.shape[-2:]
            features = torch.cat([features, *(block_moments(m, grid) for m in finer)], dim=1)
        return features.reshape(b, t, *features.shape[1:])


def block_moments(x: Tensor, grid: torch.Size) -> Tensor:
    """Mean and standard deviation of every channel of ``x`` ``(N, C, H, W)`` over the blocks
    of a ``grid`` partition → ``(N, 2C, *grid)`` (exact blocks where ``grid`` divides H and W,
    overlapping adaptive-pooling windows otherwise)."""
    # E[x²] − E[x]² cancels badly in half precision (autocast): the moments are taken in fp32.
    x32 = x.float()
    mean = F.adaptive_avg_pool2d(x32, grid)
    square = F.adaptive_avg_pool2d(x32 * x32, grid)
    # The small floor keeps the square root's gradient finite where a block is constant.
    std = (square - mean * mean).clamp_min(0).add(1e-6).sqrt()
    return torch.cat([mean, std], dim=1).to(x.dtype)


class TemporalMerge(nn.Module):
    """Two consecutive frames' stem features → one token: concatenate, ``Linear``, LayerNorm.

    ``(B, T, C, H, W)`` → ``(B, ⌈T/2⌉, H, W, dim)`` channels-last (an odd last frame is
    zero-padded, as the patch embedding pads its input).
    """

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * channels, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, t % 2))
        x = x.reshape(b, -1, 2 * c, h, w).permute(0, 1, 3, 4, 2)
        return self.norm(self.proj(x))


class LiteBackbone(SwinTransformer3D):
    """Video Swin stages on a :class:`FrameStem`: :meth:`embed` is the per-frame CNN,
    :meth:`tokens` the :class:`TemporalMerge`; everything else is
    :class:`~kvq.models.swin3d.SwinTransformer3D`'s (``forward`` returns the final normed
    features ``(B, C, T/2, H/32, W/32)``).

    ``depths`` etc. list only the stages after the stem, starting at width ``stage_dim``;
    ``stem_strides`` are the :class:`FrameStem`'s.
    """

    def __init__(
        self, stage_dim: int, stem_strides: tuple[int, ...] = (STEM_STRIDE,), **swin
    ) -> None:
        super().__init__(embed_dim=stage_dim, **swin)
        del self.patch_embed  # replaced by the stem
        self.stem = FrameStem(stem_strides)
        self.merge = TemporalMerge(self.stem.channels, stage_dim)
        self.merge.apply(_init_weights)
        self._inference_stem: FrameStem | None = None  # not a submodule: its weights are derived

    def embed(self, x: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` → per-frame stem features ``(B, T, C, H/16, W/16)``."""
        if self._inference_stem is not None and not self.training:
            return self._inference_stem(x)
        return self.stem(x)

    def prepare_inference(self) -> None:
        """Run the stem through :meth:`FrameStem.inference_copy` (BatchNorm folded,
        channels-last) in eval mode from now on; build it after the last change of weights or
        device. ``train()`` drops it again, so training always sees the real stem."""
        object.__setattr__(self, "_inference_stem", self.stem.inference_copy())

    def train(self, mode: bool = True) -> LiteBackbone:
        if mode:
            object.__setattr__(self, "_inference_stem", None)
        return super().train(mode)

    def tokens(self, e: Tensor) -> Tensor:
        return self.merge(e)

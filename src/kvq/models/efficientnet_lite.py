"""EfficientNet-Lite (Tan & Le, 2019; the "Lite" variants of the TensorFlow model garden).

Lite drops squeeze-and-excitation, uses ReLU6 and keeps the stem (32 channels) and head (1280
channels) fixed across sizes. Module names follow the widely used PyTorch port
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` …), so its ImageNet state dicts load as
they are (:func:`kvq.models.pretrained.load_efficientnet_lite`).

Input: RGB scaled as ``(x − 127) / 128``. The network is split so that a video model can take
its early, local stages: :meth:`EfficientNetLite.features` stops after the last block of a
given output stride.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

# BatchNorm settings of the TensorFlow original (momentum 0.01 in PyTorch's convention).
_BN = {"eps": 1e-3, "momentum": 0.01}


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: ``repeats`` blocks, the first with ``stride``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


# Lite0. Lite1–Lite4 scale ``repeats`` (depth) and the resolution, not the stem or the head.
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(cout, **_BN)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand (skipped at ratio 1) → k×k depthwise → 1×1 project,
    ReLU6 after the first two, identity shortcut when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv, self._bn0 = _conv_bn(cin, mid, 1)
        self._depthwise_conv, self._bn1 = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self._project_conv, self._bn2 = _conv_bn(mid, cout, 1)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """``(B, 3, H, W)`` → ImageNet logits ``(B, num_classes)``; :meth:`features` gives the map
    of an intermediate output stride."""

    def __init__(
        self, stages: tuple[StageSpec, ...] = LITE0_STAGES, num_classes: int = 1000
    ) -> None:
        super().__init__()
        self._conv_stem, self._bn0 = _conv_bn(3, stages[0].in_channels, 3, stride=2)
        self._blocks = nn.ModuleList()
        self.block_strides: list[int] = []  # output stride after each block
        stride = 2
        for spec in stages:
            for i in range(spec.repeats):
                first = i == 0
                block_stride = spec.stride if first else 1
                cin = spec.in_channels if first else spec.out_channels
                self._blocks.append(
                    MBConv(cin, spec.out_channels, spec.kernel, block_stride, spec.expand)
                )
                stride *= block_stride
                self.block_strides.append(stride)
        self._conv_head, self._bn1 = _conv_bn(stages[-1].out_channels, 1280, 1)
        self.act = nn.ReLU6(inplace=True)
        self._fc = nn.Linear(1280, num_classes)

    def feature_channels(self, stride: int) -> int:
        """Channels of :meth:`features` at ``stride`` (112 for Lite0 at 16)."""
        return self._blocks[self._last_block(stride)]._project_conv.out_channels

    def _last_block(self, stride: int) -> int:
        last = [i for i, s in enumerate(self.block_strides) if s == stride]
        if not last:
            raise ValueError(f"no blocks at output stride {stride}; have {self.block_strides}")
        return last[-1]

    def features(self, x: Tensor, stride: int = 16) -> Tensor:
        """``(B, 3, H, W)`` → ``(B, C, ⌈H/stride⌉, ⌈W/stride⌉)``, the output of the last block
        at that stride."""
        return self.feature_maps(x, (stride,))[0]

    def feature_maps(self, x: Tensor, strides: Sequence[int]) -> list[Tensor]:
        """:meth:`features` at each of ``strides``, from one pass through the network."""
        last = [self._last_block(s) for s in strides]
        kept: dict[int, Tensor] = {}
        x = self.act(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks[: max(last) + 1]):
            x = block(x)
            if i in last:
                kept[i] = x
        return [kept[i] for i in last]

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x, self.block_strides[-1])
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))

    def truncate(self, stride: int) -> None:
        """Drop every layer after :meth:`features` at ``stride`` (a stem that is never asked for
        deeper features carries no unused weights)."""
        del self._blocks[self._last_block(stride) + 1 :]
        self.block_strides = self.block_strides[: len(self._blocks)]
        del self._conv_head, self._bn1, self._fc


def fuse_batchnorm(net: EfficientNetLite) -> EfficientNetLite:
    """A copy of ``net`` for inference with every BatchNorm folded into the convolution before
    it (same outputs up to rounding; BatchNorm is a third of the CPU time otherwise)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(net).eval()
    pairs = (("_conv_stem", "_bn0"), ("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
             ("_project_conv", "_bn2"), ("_conv_head", "_bn1"))  # fmt: skip
    for module in fused.modules():
        for conv, bn in pairs:
            if isinstance(getattr(module, conv, None), nn.Conv2d):
                setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv), getattr(module, bn)))
                setattr(module, bn, nn.Identity())
    return fused

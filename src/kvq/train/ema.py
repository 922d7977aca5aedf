"""Exponential moving average of model weights (used for evaluation and model selection)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """``ema ← d·ema + (1 − d)·weights`` after every optimiser step; buffers are copied.

    The decay ramps up as ``min(decay, (1 + n)/(10 + n))`` over the first updates ``n`` so that
    early evaluations are not dominated by the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema = self.module.state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                ema[name].mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                ema[name].copy_(value)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])

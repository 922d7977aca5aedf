"""The gradient-aware gather of the training losses over ``torchrun`` processes (the process
group itself: :mod:`kvq.runtime`).

It degrades to the identity when ``torch.distributed`` is not initialised, so the same training
code runs with and without ``torchrun``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from kvq.runtime import is_distributed


class _GatherBatch(torch.autograd.Function):
    """All-gather along dim 0; the backward sums every rank's gradient of the gathered tensor
    and returns this rank's slice, which is the exact gradient of a loss on the global batch."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.size = dist.get_rank(), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def gather_batch(x: Tensor) -> Tensor:
    """Concatenate ``x`` (equal-sized along dim 0 on every rank) over all ranks, gradients
    flowing back to the local part. Identity without a process group.

    Under DistributedDataParallel every rank then computes the same global-batch loss; DDP
    averages the parameter gradients over ranks, so the backward sums (not averages) the
    per-rank gradients of the gathered tensor to keep the result equal to one process on the
    whole batch.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    return _GatherBatch.apply(x)

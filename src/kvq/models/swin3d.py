"""Video Swin Transformer backbone with Fusion Window Attention (docs/design.md, *Backbone*).

With ``attention="iwa"`` everywhere this is numerically the official Video Swin (Liu et al.,
2022) and has the same ``state_dict`` layout. KVQ replaces the attention of every block in the
later stages by :class:`FusionWindowAttention`: the ordinary window attention (IWA) plus a
cross-window branch (CWA) that lets every window attend to its top-k most related windows.
Each such block also yields a *saliency prior*: the attention every token receives under one
global softmax over the whole clip.

Tensor layout inside the stages is channels-last ``(B, D, H, W, C)``; windows are
``(B, nW, N, C)`` with ``N = wd·wh·ww`` tokens per window.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

Size3 = tuple[int, int, int]

# Additive logit of a masked pair in the shifted-window mask; the official value, kept so that
# trained weights reproduce (a true -inf would change results for rows that are mostly masked).
SHIFT_MASK_VALUE = -100.0


# --------------------------------------------------------------------------------------------
# Window geometry
# --------------------------------------------------------------------------------------------


def clamp_window(grid: Size3, window: Size3, shift: Size3) -> tuple[Size3, Size3]:
    """Window and shift actually used on a ``grid``: an axis no longer than the window gets a
    window of the whole axis and no shift (as the official ``get_window_size``)."""
    w = tuple(g if g <= k else k for g, k in zip(grid, window))
    s = tuple(0 if g <= k else t for g, k, t in zip(grid, window, shift))
    return w, s  # type: ignore[return-value]


def window_partition(x: Tensor, window: Size3) -> Tensor:
    """``(B, D, H, W, C)`` with D, H, W multiples of ``window`` → ``(B, nW, N, C)``."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, -1, wd * wh * ww, c)


def window_reverse(windows: Tensor, window: Size3, grid: Size3) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B, nW, N, C)`` → ``(B, D, H, W, C)``."""
    b, _, _, c = windows.shape
    (d, h, w), (wd, wh, ww) = grid, window
    x = windows.view(b, d // wd, h // wh, w // ww, wd, wh, ww, c)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, c)


def relative_position_index(window: Size3) -> Tensor:
    """``(N, N)`` index into the ``(2wd-1)(2wh-1)(2ww-1)``-row relative position bias table.

    Always built on the CPU (a constant, also when the model is built on the meta device).
    """
    cpu = torch.device("cpu")
    coords = torch.stack(
        torch.meshgrid(*(torch.arange(k, device=cpu) for k in window), indexing="ij")
    ).flatten(1)  # (3, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 3)
    rel = rel + torch.tensor([k - 1 for k in window], device=cpu)
    _, wh, ww = window
    return (rel * torch.tensor([(2 * wh - 1) * (2 * ww - 1), 2 * ww - 1, 1], device=cpu)).sum(-1)


class ShiftMask(NamedTuple):
    """The shifted-window mask of one grid, as its few distinct patterns.

    ``patterns`` ``(P, N, N)`` float (0 or ``SHIFT_MASK_VALUE``); ``order`` ``(nW,)`` sorts the
    windows by pattern, ``counts`` says how many windows each pattern has in that order, and
    ``restore`` ``(nW,)`` is the inverse permutation.
    """

    patterns: Tensor
    order: Tensor
    counts: tuple[int, ...]
    restore: Tensor


@lru_cache(maxsize=64)
def shift_mask_patterns(
    grid: Size3, window: Size3, shift: Size3, device: torch.device
) -> ShiftMask:
    """The official shifted-window mask of a ``grid`` of tokens (cached per shape).

    The official code materialises an ``(nW, N, N)`` mask, but a window's mask depends only on
    which shifted regions it covers, so there are at most 8 patterns. Built outside inference
    mode whatever the caller's mode: the cache outlives the call, and tensors made under
    ``torch.inference_mode`` could not be saved for a later training step's backward.
    """
    with torch.inference_mode(False):
        return _shift_mask(grid, window, shift, device)


def _shift_mask(grid: Size3, window: Size3, shift: Size3, device: torch.device) -> ShiftMask:
    region = torch.zeros(1, *grid, 1)
    label = 0
    for sd in _shift_slices(window[0], shift[0]):
        for sh in _shift_slices(window[1], shift[1]):
            for sw in _shift_slices(window[2], shift[2]):
                region[:, sd, sh, sw, :] = label
                label += 1
    regions = window_partition(region, window)[0, :, :, 0]  # (nW, N)
    rows, inverse, counts = torch.unique(regions, dim=0, return_inverse=True, return_counts=True)
    patterns = (rows[:, None, :] != rows[:, :, None]).float() * SHIFT_MASK_VALUE
    order = torch.sort(inverse, stable=True).indices
    restore = torch.argsort(order)
    return ShiftMask(
        patterns.to(device), order.to(device), tuple(counts.tolist()), restore.to(device)
    )


def _shift_slices(window: int, shift: int) -> tuple[slice, ...]:
    return (slice(0, -window), slice(-window, -shift), slice(-shift, None))


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


def _split_heads(qkv: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(B, nW, N, 3C)`` → q, k, v each ``(B, nW, heads, N, C/heads)``."""
    b, nw, n, c3 = qkv.shape
    qkv = qkv.view(b, nw, n, 3, num_heads, c3 // (3 * num_heads)).permute(3, 0, 1, 4, 2, 5)
    return qkv[0], qkv[1], qkv[2]


def _merge_heads(x: Tensor) -> Tensor:
    """``(B, nW, heads, N, d)`` → ``(B, nW, N, heads·d)``."""
    b, nw, h, n, d = x.shape
    return x.transpose(2, 3).reshape(b, nw, n, h * d)


def window_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor, shift_mask: ShiftMask | None
) -> Tensor:
    """Self-attention inside each window (IWA): q, k, v ``(B, nW, heads, N, d)``, ``bias``
    ``(heads, N, N)`` → ``(B, nW, heads, N, d)``.

    With a ``shift_mask`` the windows are sorted by mask pattern and attended in one group per
    pattern, so no ``(nW, heads, N, N)`` tensor is ever built; one permutation there and back
    (rather than a gather and scatter per group) keeps the backward pass to a single
    scatter per tensor.
    """
    b, nw, h, n, d = q.shape
    bias = bias.to(q.dtype)
    if shift_mask is None:
        q, k, v = (t.reshape(b * nw, h, n, d) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None]).view(b, nw, h, n, d)
    groups = zip(
        *(t.index_select(1, shift_mask.order).split(shift_mask.counts, dim=1) for t in (q, k, v))
    )
    out = []
    for pattern, (qg, kg, vg) in zip(shift_mask.patterns, groups):
        m = qg.shape[1]
        mask = (bias + pattern.to(q.dtype))[None]
        qg, kg, vg = (t.reshape(b * m, h, n, d) for t in (qg, kg, vg))
        out.append(F.scaled_dot_product_attention(qg, kg, vg, attn_mask=mask).view(b, m, h, n, d))
    return torch.cat(out, dim=1).index_select(1, shift_mask.restore)


class CrossWindowAttention(nn.Module):
    """Cross-window attention (CWA): every window attends to its top-k related windows.

    Per head, queries and keys are averaged over the tokens of each window; the affinity of two
    windows is the scaled dot product of those means. Each window keeps its ``topk`` most related
    windows, weighted by a softmax over their affinities, and all its queries attend to the
    gathered ``topk·N`` keys and values, each scaled by its window's weight. The routing
    (indices and weights) carries no gradient; there is no position bias and no mask.
    """

    def __init__(self, dim: int, num_heads: int, topk: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.topk = topk
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    @torch.no_grad()
    def route(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """q, k ``(B, nW, heads, N, d)`` → ``(indices, weights)``, each ``(B, heads, nW, k)``.

        ``k`` is capped at the number of windows.
        """
        scale = q.shape[-1] ** -0.5
        q_mean = q.mean(dim=3).transpose(1, 2)  # (B, heads, nW, d)
        k_mean = k.mean(dim=3).transpose(1, 2)
        affinity = (q_mean * scale) @ k_mean.transpose(-2, -1)  # (B, heads, nW, nW)
        logits, indices = affinity.topk(min(self.topk, affinity.shape[-1]), dim=-1)
        return indices, logits.softmax(dim=-1)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, indices: Tensor, weights: Tensor) -> Tensor:
        """Attention of each window over its routed windows → ``(B, nW, heads, N, d)``."""
        b, nw, h, n, d = q.shape
        topk = indices.shape[-1]
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, nW, N, d)
        flat = indices.reshape(b, h, nw * topk, 1, 1).expand(-1, -1, -1, n, d)
        scale = weights.to(q.dtype).view(b, h, nw, topk, 1, 1)
        k_sel = (k.gather(2, flat).view(b, h, nw, topk, n, d) * scale).view(b, h * nw, topk * n, d)
        v_sel = (v.gather(2, flat).view(b, h, nw, topk, n, d) * scale).view(b, h * nw, topk * n, d)
        out = F.scaled_dot_product_attention(q.reshape(b, h * nw, n, d), k_sel, v_sel)
        return out.view(b, h, nw, n, d).transpose(1, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x ``(B, nW, N, C)`` → (output ``(B, nW, N, C)``, q, k) with q, k as in :meth:`route`."""
        q, k, v = _split_heads(self.qkv(x), self.num_heads)
        out = self.attend(q, k, v, *self.route(q, k))
        return self.proj(_merge_heads(out)), q, k


PRIOR_IMPLS = ("chunked", "fused")
DEFAULT_PRIOR_CHUNK = 1024


def check_prior_options(impl: str, chunk: int) -> None:
    """Raise ``ValueError`` unless ``impl`` is one of :data:`PRIOR_IMPLS` and ``chunk`` (query
    rows per chunk of the chunked prior) is a positive int."""
    if impl not in PRIOR_IMPLS:
        raise ValueError(f"prior_impl must be one of {PRIOR_IMPLS}, got {impl!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"prior_chunk must be a positive int, got {chunk!r}")


@torch.no_grad()
def saliency_prior(
    q: Tensor,
    k: Tensor,
    valid: Tensor | None = None,
    chunk: int = DEFAULT_PRIOR_CHUNK,
    impl: str = "chunked",
) -> Tensor:
    """Attention each token receives under one softmax over all tokens of the clip.

    q, k ``(B, L, C)`` (all heads concatenated, scaled by ``head_dim**-0.5`` by the caller);
    ``valid`` ``(L,)`` bool excludes padding tokens both as queries and as keys. Returns
    ``(B, L)`` float32: the column sums of ``softmax(q kᵀ)``; padding tokens get 0. The ``L×L``
    matrix never exists:

    - ``"chunked"``: softmax over query chunks of ``chunk`` rows (memory ``O(chunk·L)``);
    - ``"fused"``: two passes of the fused attention kernel, see :func:`_fused_prior`
      (memory ``O(L·C)``; meant to stay compute-bound on GPUs, not yet measured there). Where
      this torch build or device lacks the kernel it raises :class:`FusedKernelUnavailable`.
    """
    if impl not in PRIOR_IMPLS:
        raise ValueError(f"impl must be one of {PRIOR_IMPLS}, got {impl!r}")
    if valid is not None:
        out = q.new_zeros(q.shape[:2], dtype=torch.float32)
        out[:, valid] = saliency_prior(q[:, valid], k[:, valid], None, chunk, impl)
        return out
    if impl == "fused":
        return _fused_prior(q, k)
    total = q.new_zeros(q.shape[:2], dtype=torch.float32)
    for start in range(0, q.shape[1], chunk):
        logits = (q[:, start : start + chunk] @ k.transpose(1, 2)).float()
        total += logits.softmax(dim=-1).sum(dim=1)
    return total


def window_saliency_prior(
    q: Tensor, k: Tensor, valid: Tensor | None, chunk: int, impl: str
) -> Tensor:
    """:func:`saliency_prior` of window-partitioned q, k ``(B, nW, heads, N, d)`` (all heads
    concatenated) → ``(B, nW, N)``; ``valid`` ``(nW, N)`` marks the non-padding tokens."""
    b, nw, _, n, d = q.shape
    q, k = (_merge_heads(t.detach()).reshape(b, nw * n, -1) for t in (q, k))
    flat_valid = None if valid is None else valid.reshape(-1)
    # "fused" runs only where its kernel exists (probed once per device and dtype).
    impl = impl if impl == "chunked" or fused_prior_available(q.device, q.dtype) else "chunked"
    return saliency_prior(q * d**-0.5, k, flat_valid, chunk, impl).view(b, nw, n)


# The fused prior needs each query's softmax log-normaliser, which only the private aten
# attention ops return. Their schemas, as called below, hold from torch 2.3 (pyproject's floor)
# on; before that, or where an op is gone, the kernel counts as missing.
FUSED_PRIOR_MIN_TORCH = (2, 3)


class FusedKernelUnavailable(NotImplementedError):
    """This torch build has no fused attention kernel that returns the log-normaliser."""


def _attention_logsumexp(q: Tensor, k: Tensor) -> Tensor:
    """``log Σ_j exp(q_i·k_j)`` for each query, ``(B, L, C)`` each → ``(B, L)`` float32, from
    the fused attention kernel that returns it (the attention output itself is discarded).

    The one place that calls ``torch.ops.aten._scaled_dot_product_*``. A device the op has no
    kernel for raises ``NotImplementedError`` from the dispatcher, an old or changed torch
    :class:`FusedKernelUnavailable` (a ``NotImplementedError`` too).
    """
    if torch.__version__ < FUSED_PRIOR_MIN_TORCH:  # TorchVersion compares with tuples
        raise FusedKernelUnavailable(f"torch {torch.__version__} is older than 2.3")
    cpu = q.device.type == "cpu"
    name = (
        "_scaled_dot_product_flash_attention_for_cpu"
        if cpu
        else "_scaled_dot_product_efficient_attention"  # any head size, fp32/fp16/bf16
    )
    op = getattr(torch.ops.aten, name, None)
    if op is None:
        raise FusedKernelUnavailable(f"torch {torch.__version__} has no aten.{name}")
    q4, k4 = q[:, None].contiguous(), k[:, None].contiguous()
    if cpu:
        _, lse = op(q4, k4, k4, 0.0, False, scale=1.0)
    else:
        _, lse, *_ = op(q4, k4, k4, None, True, 0.0, False, scale=1.0)
    return lse[:, 0, : q.shape[1]].float()


@cache
def fused_prior_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the fused prior runs on ``device`` in ``dtype``: one probe on a few tokens, the
    first time it is asked (cached). Only a missing kernel (``NotImplementedError``) answers
    no, with a warning; any other error, out of memory included, is raised."""
    probe = torch.zeros(1, 8, 8, device=device, dtype=dtype)
    try:
        with torch.no_grad():
            _attention_logsumexp(probe, probe)
    except NotImplementedError as err:
        message = f"fused saliency prior unavailable on {device} in {dtype} ({err}); using chunked"
        warnings.warn(message, stacklevel=2)
        return False
    return True


def _fused_prior(q: Tensor, k: Tensor) -> Tensor:
    """Column sums of ``softmax(q kᵀ)`` in two flash-style passes.

    Pass 1 gives each query's log-normaliser ``lse_i``. The column sum of key ``j`` is
    ``Σ_i exp(k_j·q_i − lse_i)``, itself the normaliser of an attention with the roles swapped:
    pass 2 lets the keys attend to the queries, with ``−lse_i`` folded into the dot product by
    two extra dimensions (``[k_j, 1, 1] · [q_i, −hi_i, −lo_i]``; ``hi + lo = lse`` keeps ~16
    mantissa bits in bf16), and returns ``exp`` of its log-normaliser.
    """
    b, length, c = q.shape
    lse = _attention_logsumexp(q, k)
    hi = lse.to(q.dtype)
    lo = (lse - hi.float()).to(q.dtype)
    pad = (-(c + 2)) % 8  # fused kernels want head sizes in multiples of 8
    keys = torch.cat([k, k.new_ones(b, length, 2), k.new_zeros(b, length, pad)], dim=-1)
    queries = torch.cat([q, -hi[..., None], -lo[..., None], q.new_zeros(b, length, pad)], dim=-1)
    return _attention_logsumexp(keys, queries).exp()


class FusionWindowAttention(nn.Module):
    """IWA, CWA or their sum (FWA) over the same window-partitioned tokens.

    ``attention="iwa"`` is the plain window attention of Video Swin, whose parameter names it
    keeps (``qkv``, ``proj``, ``relative_position_bias_table``, ``relative_position_index``);
    ``"cwa"`` is only the cross-window branch, ``cross`` (the authors' checkpoint calls it
    ``cross_windowattn``); ``"fwa"`` is the sum of both.
    """

    def __init__(
        self, dim: int, window: Size3, num_heads: int, attention: str = "iwa", topk: int = 8
    ) -> None:
        super().__init__()
        if attention not in ("iwa", "cwa", "fwa"):
            raise ValueError(f"attention must be 'iwa', 'cwa' or 'fwa', got {attention!r}")
        self.attention = attention
        # How the prior is computed, not what it is: set by SwinTransformer3D.set_prior_options.
        self.prior_impl = "chunked"
        self.prior_chunk = DEFAULT_PRIOR_CHUNK
        self.num_heads = num_heads
        if attention != "cwa":
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            n_rel = math.prod(2 * k - 1 for k in window)
            self.relative_position_bias_table = nn.Parameter(torch.zeros(n_rel, num_heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
            self.register_buffer("relative_position_index", relative_position_index(window))
        if attention != "iwa":
            self.cross = CrossWindowAttention(dim, num_heads, topk)

    def position_bias(self, n: int) -> Tensor:
        """``(heads, n, n)`` bias. A window clamped to ``n`` tokens uses the top-left ``n×n``
        block of the full window's index, as the official code does (trained weights rely on it)."""
        index = self.relative_position_index[:n, :n].reshape(-1)
        return self.relative_position_bias_table[index].view(n, n, -1).permute(2, 0, 1)

    def forward(
        self,
        x: Tensor,
        shift_mask: ShiftMask | None,
        valid: Tensor | None = None,
        need_prior: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x ``(B, nW, N, C)`` → (output ``(B, nW, N, C)``, prior ``(B, nW, N)`` or None).

        With ``need_prior`` the saliency prior is computed from the CWA q, k (IWA's when there
        is no CWA branch); ``valid`` ``(nW, N)`` marks the non-padding tokens.
        """
        out = 0
        if self.attention != "cwa":
            iwa_q, iwa_k, iwa_v = _split_heads(self.qkv(x), self.num_heads)
            iwa = window_attention(iwa_q, iwa_k, iwa_v, self.position_bias(x.shape[2]), shift_mask)
            out = self.proj(_merge_heads(iwa))
        if self.attention != "iwa":
            cwa, cwa_q, cwa_k = self.cross(x)
            out = out + cwa
        if not need_prior:
            return out, None
        if self.attention == "iwa":
            prior_q, prior_k = iwa_q, iwa_k
        else:
            prior_q, prior_k = cwa_q, cwa_k
        prior = window_saliency_prior(prior_q, prior_k, valid, self.prior_chunk, self.prior_impl)
        return out, prior


# --------------------------------------------------------------------------------------------
# Blocks and stages
# --------------------------------------------------------------------------------------------


class Mlp(nn.Sequential):
    """``fc1 → GELU → fc2`` (official names)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)


class DropPath(nn.Module):
    """Stochastic depth: drops the residual branch per sample during training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class SwinBlock3D(nn.Module):
    """(Shifted) window block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Input and output ``(B, D, H, W, C)``. The block pads the normed tokens with zeros to a
    multiple of the window (after ``norm1``, as the official code), rolls by ``-shift``,
    partitions, attends, and undoes all three.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: Size3,
        shift: Size3,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        attention: str = "iwa",
        topk: int = 8,
    ) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = FusionWindowAttention(dim, window, num_heads, attention, topk)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _attention(self, x: Tensor, need_prior: bool) -> tuple[Tensor, Tensor | None]:
        d, h, w = x.shape[1:4]
        window, shift = clamp_window((d, h, w), self.window, self.shift)
        pads = [(-n) % k for n, k in zip((d, h, w), window)]
        x = F.pad(self.norm1(x), (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        grid: Size3 = (d + pads[0], h + pads[1], w + pads[2])
        shifted = any(shift)
        if shifted:
            x = torch.roll(x, shifts=[-s for s in shift], dims=(1, 2, 3))
        shift_mask = shift_mask_patterns(grid, window, shift, x.device) if shifted else None
        valid = None
        if need_prior and any(pads):
            valid = _valid_windows((d, h, w), grid, window, shift, x.device)
        out, prior = self.attn(window_partition(x, window), shift_mask, valid, need_prior)
        out = window_reverse(out, window, grid)
        if prior is not None:
            prior = window_reverse(prior.unsqueeze(-1), window, grid)
        if shifted:
            out = torch.roll(out, shifts=list(shift), dims=(1, 2, 3))
            if prior is not None:
                prior = torch.roll(prior, shifts=list(shift), dims=(1, 2, 3))
        out = out[:, :d, :h, :w]
        return out, None if prior is None else prior[:, :d, :h, :w, 0]

    def forward(self, x: Tensor, need_prior: bool = False) -> tuple[Tensor, Tensor | None]:
        """x ``(B, D, H, W, C)`` → (same shape, prior ``(B, D, H, W)`` with ``need_prior``, else
        None)."""
        attn, prior = self._attention(x, need_prior)
        x = x + self.drop_path(attn)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, prior


def _valid_windows(size: Size3, grid: Size3, window: Size3, shift: Size3, device) -> Tensor:
    """``(nW, N)`` bool: which window tokens are real (not padding) after the roll."""
    valid = torch.zeros(1, *grid, 1, dtype=torch.bool, device=device)
    valid[:, : size[0], : size[1], : size[2]] = True
    valid = torch.roll(valid, shifts=[-s for s in shift], dims=(1, 2, 3))
    return window_partition(valid, window)[0, :, :, 0]


class PatchMerging(nn.Module):
    """Concatenate each 2×2 spatial neighbourhood and project ``4C → 2C``.

    ``(B, D, H, W, C)`` → ``(B, D, ⌈H/2⌉, ⌈W/2⌉, 2C)``; odd sizes are zero-padded first.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:4]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat(
            [x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]],
            dim=-1,
        )
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``depth`` blocks, every odd one shifted by half a window, then optional PatchMerging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: Size3,
        mlp_ratio: float,
        drop_path: Sequence[float],
        downsample: bool,
        attention: str = "iwa",
        topk: int = 8,
        with_prior: bool = False,
    ) -> None:
        super().__init__()
        self.with_prior = with_prior
        shift: Size3 = tuple(k // 2 for k in window)  # type: ignore[assignment]
        self.blocks = nn.ModuleList(
            SwinBlock3D(
                dim,
                num_heads,
                window,
                (0, 0, 0) if i % 2 == 0 else shift,
                mlp_ratio,
                drop_path[i],
                attention,
                topk,
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None
        self.use_checkpoint = False

    def forward(self, x: Tensor, need_priors: bool = False) -> tuple[Tensor, list[Tensor]]:
        """x ``(B, D, H, W, C)`` → (downsampled x, priors of the blocks, each ``(B, D, H, W)``).

        Priors are computed only when asked (``need_priors``) of a stage ``with_prior``.
        """
        need_prior = need_priors and self.with_prior
        priors = []
        for block in self.blocks:
            if self.use_checkpoint and self.training:
                x, prior = checkpoint(block, x, need_prior, use_reentrant=False)
            else:
                x, prior = block(x, need_prior)
            if prior is not None:
                priors.append(prior)
        if self.downsample is not None:
            x = self.downsample(x)
        return x, priors


class PatchEmbed3D(nn.Module):
    """Non-overlapping ``patch`` cubes → ``C`` channels, LayerNorm.

    ``(B, 3, T, H, W)`` → ``(B, C, ⌈T/pt⌉, ⌈H/ph⌉, ⌈W/pw⌉)`` (inputs are zero-padded up).
    """

    def __init__(self, patch: Size3, dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        t, h, w = x.shape[2:]
        pt, ph, pw = self.patch
        x = F.pad(x, (0, (-w) % pw, 0, (-h) % ph, 0, (-t) % pt))
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class SwinTransformer3D(nn.Module):
    """Video Swin backbone. ``forward`` returns the final normed features
    ``(B, C·2^(stages-1), T/2, H/32, W/32)`` for the default patch size and four stages.

    ``attention[i]`` and ``topk[i]`` set each stage's attention (``"iwa"`` is plain Video Swin);
    stages with ``prior_stages[i]`` yield a saliency prior per block in
    :meth:`forward_with_priors`.
    """

    def __init__(
        self,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: Size3 = (8, 7, 7),
        patch_size: Size3 = (2, 4, 4),
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        attention: Sequence[str] = ("iwa", "iwa", "iwa", "iwa"),
        topk: Sequence[int] = (8, 8, 8, 4),
        prior_stages: Sequence[bool] = (False, False, False, False),
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed3D(patch_size, embed_dim)
        n_blocks = sum(depths)  # stochastic depth grows linearly from 0 to drop_path_rate
        rates = [drop_path_rate * i / max(1, n_blocks - 1) for i in range(n_blocks)]
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.layers.append(
                SwinStage(
                    embed_dim * 2**i,
                    depth,
                    num_heads[i],
                    tuple(window_size),
                    mlp_ratio,
                    rates[start : start + depth],
                    downsample=i < len(depths) - 1,
                    attention=attention[i],
                    topk=topk[i],
                    with_prior=prior_stages[i],
                )
            )
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.apply(_init_weights)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        for layer in self.layers:
            layer.use_checkpoint = enable

    def set_prior_options(self, impl: str = "chunked", chunk: int = DEFAULT_PRIOR_CHUNK) -> None:
        """How the saliency priors are computed (never what they are): ``impl`` ``"chunked"``
        or ``"fused"`` (which falls back to chunked where the fused kernel is missing, see
        :func:`fused_prior_available`), ``chunk`` query rows per chunk (see
        :func:`saliency_prior`)."""
        check_prior_options(impl, chunk)
        for module in self.modules():
            if isinstance(module, FusionWindowAttention):
                module.prior_impl, module.prior_chunk = impl, chunk

    def embed(self, x: Tensor) -> Tensor:
        """The input's embedding, ``(B, 3, T, H, W)`` → ``(B, C, T/2, H/4, W/4)``; a subclass
        with another stem returns whatever its :meth:`tokens` reads."""
        return self.patch_embed(x)

    def tokens(self, e: Tensor) -> Tensor:
        """:meth:`embed`'s output → the first stage's channels-last tokens ``(B, D, H, W, C)``."""
        return e.permute(0, 2, 3, 4, 1)

    def forward_with_priors(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x ``(B, 3, T, H, W)`` → (features as :meth:`forward`, priors of every block with a
        prior, each ``(B, D_i, H_i, W_i)`` on its stage's token grid)."""
        return self.forward_embedded(self.embed(x), need_priors=True)

    def forward_embedded(self, e: Tensor, need_priors: bool = False) -> tuple[Tensor, list[Tensor]]:
        """:meth:`forward_with_priors` from the output of :meth:`embed` (a frozen stem's output
        can be computed once and cached); without ``need_priors`` the list is empty."""
        x = self.tokens(e)
        priors: list[Tensor] = []
        for layer in self.layers:
            x, layer_priors = layer(x, need_priors)
            priors.extend(layer_priors)
        return self.norm(x).permute(0, 4, 1, 2, 3), priors

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_embedded(self.embed(x))[0]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)

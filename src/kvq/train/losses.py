"""Training losses (docs/design.md, *Local Perception Constraint* and *Training*).

``L = L_plcc + λ_r·L_rank + λ_p·L_lpc``:

* :func:`plcc_loss` and :func:`rank_loss` follow FAST-VQA's definitions and see the *global*
  batch — :class:`KVQLoss` gathers scores and labels from every rank first;
* :func:`lpc_loss` is the Local Perception Constraint: the quality map ``Q`` of a clip should
  correlate with ``Q̂``, the map obtained by scoring every ``[2, 32, 32]`` cube of the clip as an
  independent clip (:func:`cube_quality_map`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kvq.train.distributed import gather_batch

_EPS = 1e-8


def _zscore(x: Tensor, dim: int | tuple[int, ...] = 0) -> Tensor:
    std, mean = torch.std_mean(x, dim=dim, unbiased=False, keepdim=True)
    return (x - mean) / (std + _EPS)


def plcc_loss(pred: Tensor, mos: Tensor) -> Tensor:
    """FAST-VQA's PLCC loss of ``(N,)`` predictions against ``(N,)`` labels.

    Both are z-scored over the batch; the loss averages ``MSE(p, y)/4`` (zero iff the scores
    equal the labels up to an increasing affine map) and ``MSE(ρ·p, y)/4`` with ``ρ`` their
    correlation, so it equals ``(1 − ρ)/4 + (1 − ρ²)/8`` and vanishes exactly at ``ρ = 1``.
    """
    p, y = _zscore(pred.float()), _zscore(mos.float())
    rho = (p * y).mean()
    return (F.mse_loss(p, y) + F.mse_loss(rho * p, y)) / 8


def rank_loss(pred: Tensor, mos: Tensor, groups: Tensor | None = None) -> Tensor:
    """FAST-VQA's pairwise rank loss of ``(N,)`` predictions against ``(N,)`` labels.

    Every ordered pair whose predicted order contradicts the label order costs its prediction
    gap (a hinge at zero margin). The mean over the ``N(N−1)`` pairs is divided by
    ``1 + largest violation`` so the loss stays below 1 whatever the score scale.

    ``groups`` ``(N,)`` (integer ids) restricts the pairs to videos of the same group — the
    same content at several severities — and averages over those pairs only (0 when no group
    has two videos).
    """
    pred, mos = pred.float(), mos.float()
    n = pred.shape[0]
    # violation[i, j] = p_i − p_j where y_i < y_j (or p_j − p_i where y_i > y_j).
    violation = F.relu((pred[:, None] - pred[None, :]) * torch.sign(mos[None, :] - mos[:, None]))
    if groups is None:
        return violation.sum() / (n * (n - 1)) / (1 + violation.max())
    same = groups[:, None] == groups[None, :]
    same.fill_diagonal_(False)
    pairs = same.sum()
    if pairs == 0:
        return pred.sum() * 0
    violation = violation * same
    return violation.sum() / pairs / (1 + violation.max())


def cut_cubes(clip: Tensor, cube: tuple[int, int, int]) -> tuple[Tensor, tuple[int, int, int]]:
    """Non-overlapping cubes: ``(B, 3, T, H, W)`` → ``(B·n_t·n_h·n_w, 3, c_t, c_h, c_w)``.

    Cubes are ordered video by video, then row-major over the ``(n_t, n_h, n_w)`` grid, which
    is returned too; a remainder smaller than a cube at the end of an axis is left out.
    """
    b, c, t, h, w = clip.shape
    ct, ch, cw = cube
    grid = (t // ct, h // ch, w // cw)
    if min(grid) == 0:
        raise ValueError(f"cube {tuple(cube)} is larger than the clip {(t, h, w)}")
    nt, nh, nw = grid
    x = clip[:, :, : nt * ct, : nh * ch, : nw * cw]
    x = x.reshape(b, c, nt, ct, nh, ch, nw, cw).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(b * nt * nh * nw, c, ct, ch, cw), grid


def cube_quality_map(
    local_quality: Callable[[Tensor], Tensor],
    clip: Tensor,
    cube: tuple[int, int, int],
    grid: tuple[int, ...],
) -> Tensor:
    """``Q̂``: every cube of ``clip`` scored as an independent clip, on ``grid`` ``(T', H', W')``.

    ``local_quality`` maps ``(N, 3, c_t, c_h, c_w)`` cubes to quality maps ``(N, …)``; a cube's
    score is the mean of its map (a single cell for ``[2, 32, 32]`` cubes). The reassembled
    ``(B, n_t, n_h, n_w)`` map is resampled (trilinear) when its grid differs from ``grid``, as
    for the supplement's ``[2, 28, 28]`` cubes.
    """
    cubes, cube_grid = cut_cubes(clip, cube)
    scores = local_quality(cubes).reshape(cubes.shape[0], -1).mean(dim=1)
    return assemble_cube_scores(scores, clip.shape[0], grid, cube_grid)


def assemble_cube_scores(
    scores: Tensor,
    batch: int,
    grid: tuple[int, ...],
    cube_grid: tuple[int, ...] | None = None,
) -> Tensor:
    """Per-cube scores ``(B·n_t·n_h·n_w,)`` in :func:`cut_cubes` order → ``Q̂`` ``(B, *grid)``,
    resampled (trilinear) when the cube grid (default: ``grid``) differs from ``grid``."""
    cube_grid = tuple(cube_grid or grid)
    q_hat = scores.reshape(batch, *cube_grid)
    if cube_grid != tuple(grid):
        q_hat = F.interpolate(q_hat[:, None], size=tuple(grid), mode="trilinear")[:, 0]
    return q_hat


# Region labels that vary less than this (MOS units, std over the cells) carry no spatial signal
# to learn from: a whole-frame distortion of flat content. Their z-scores would be noise.
LOCAL_LABEL_MIN_STD = 0.05


def local_label_loss(q: Tensor, labels: Tensor) -> Tensor:
    """``1 − Pearson`` per video between its quality map ``q`` ``(B, T', H', W')``, averaged
    over time and pooled to the grid of ``labels`` ``(B, G, G)`` (NaN: a video without region
    labels), and those labels; the mean over the videos whose labels vary (zero if none do)."""
    grid = labels.shape[-2:]
    cells = F.adaptive_avg_pool2d(q.float().mean(dim=1), grid).flatten(1)
    labels = labels.to(cells).flatten(1)
    usable = torch.isfinite(labels).all(dim=1)
    usable &= torch.nan_to_num(labels).std(dim=1) >= LOCAL_LABEL_MIN_STD
    if not usable.any():
        return cells.sum() * 0.0  # keeps the graph (DDP needs every rank to backpropagate)
    a, b = _zscore(cells[usable], dim=1), _zscore(labels[usable], dim=1)
    return (1 - F.cosine_similarity(a, b, dim=1, eps=_EPS)).mean()


def lpc_loss(q: Tensor, q_hat: Tensor) -> Tensor:
    """``1 − Pearson(Q, Q̂)`` per video (z-normalised maps, cosine), averaged over the batch."""
    q = _zscore(q.float().flatten(1), dim=1)
    q_hat = _zscore(q_hat.float().flatten(1), dim=1)
    return (1 - F.cosine_similarity(q, q_hat, dim=1, eps=_EPS)).mean()


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms and the LPC cube size ``(T, H, W)`` (0 weight disables a term).

    ``group_rank_weight``: the rank loss once more, over pairs of the same group only (the same
    content at several severities; needs the training set's groups, ``data.train_groups``).
    ``local_label_weight``: ``1 − Pearson`` between each video's quality map (averaged over
    time, pooled to the label grid) and its measured region labels (``data.train_local``) —
    not part of the paper, whose region protocol (LPVQ) is zero-shot: weights trained with it
    are no longer zero-shot on region labels of the same kind.
    """

    rank_weight: float = 0.5
    lpc_weight: float = 0.05
    lpc_cube: tuple[int, int, int] = (2, 32, 32)
    group_rank_weight: float = 0.0
    local_label_weight: float = 0.0


@dataclass
class LossTerms:
    """The total loss (to back-propagate) and its parts (detached, for logging)."""

    total: Tensor
    plcc: Tensor
    rank: Tensor
    lpc: Tensor
    group_rank: Tensor
    local_label: Tensor

    def as_floats(self) -> dict[str, float]:
        names = ("total", "plcc", "rank", "lpc", "group_rank", "local_label")
        return {k: getattr(self, k).item() for k in names}


class KVQLoss:
    """``L_plcc + λ_r·L_rank`` over the global batch, plus ``λ_p·L_lpc`` over the local one.

    The LPC term is a per-video mean; DDP's gradient averaging over equally sized local
    batches turns it into the global mean, so it needs no gather.
    """

    def __init__(self, config: LossConfig = LossConfig()) -> None:
        self.config = config

    def __call__(
        self,
        score: Tensor,
        mos: Tensor,
        q: Tensor | None = None,
        q_hat: Tensor | None = None,
        groups: Tensor | None = None,
        local_labels: Tensor | None = None,
    ) -> LossTerms:
        score, mos = gather_batch(score.float()), gather_batch(mos.float())
        plcc = plcc_loss(score, mos)
        rank = rank_loss(score, mos)
        total = plcc + self.config.rank_weight * rank
        lpc = torch.zeros((), device=score.device)
        if self.config.lpc_weight and q is not None and q_hat is not None:
            lpc = lpc_loss(q, q_hat)
            total = total + self.config.lpc_weight * lpc
        group_rank = torch.zeros((), device=score.device)
        if self.config.group_rank_weight and groups is not None:
            group_rank = rank_loss(score, mos, gather_batch(groups))
            total = total + self.config.group_rank_weight * group_rank
        local_label = torch.zeros((), device=score.device)
        if self.config.local_label_weight and q is not None and local_labels is not None:
            local_label = local_label_loss(q, local_labels)  # per video, like the LPC term
            total = total + self.config.local_label_weight * local_label
        return LossTerms(
            total,
            plcc.detach(),
            rank.detach(),
            lpc.detach(),
            group_rank.detach(),
            local_label.detach(),
        )

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from kvq.runtime import leave_process_group
from kvq.train.losses import (
    KVQLoss,
    LossConfig,
    cube_quality_map,
    cut_cubes,
    lpc_loss,
    plcc_loss,
    rank_loss,
)


def test_plcc_loss_hand_computed():
    pred = torch.tensor([1.0, 2.0, 4.0])
    mos = torch.tensor([1.0, 3.0, 2.0])
    # z-scores by hand (population std).
    pm, ps = 7 / 3, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 3)
    ym, ys = 2.0, math.sqrt(2 / 3)
    p = [(v - pm) / ps for v in (1, 2, 4)]
    y = [(v - ym) / ys for v in (1, 3, 2)]
    rho = sum(a * b for a, b in zip(p, y)) / 3
    loss0 = sum((a - b) ** 2 for a, b in zip(p, y)) / 3 / 4
    loss1 = sum((rho * a - b) ** 2 for a, b in zip(p, y)) / 3 / 4
    assert plcc_loss(pred, mos).item() == pytest.approx((loss0 + loss1) / 2, rel=1e-5)
    assert plcc_loss(pred, mos).item() == pytest.approx((1 - rho) / 4 + (1 - rho**2) / 8, rel=1e-5)


def test_plcc_loss_is_zero_for_an_increasing_affine_map_only():
    mos = torch.tensor([1.0, 3.0, 2.0, 5.0])
    assert plcc_loss(3 * mos - 7, mos).item() == pytest.approx(0, abs=1e-6)
    assert plcc_loss(-mos, mos).item() == pytest.approx(0.5, abs=1e-6)  # ρ = −1


def test_rank_loss_hand_computed():
    pred = torch.tensor([3.0, 1.0, 2.0])
    mos = torch.tensor([1.0, 2.0, 3.0])
    # Discordant ordered pairs: (0,1) gap 2, (0,2) gap 1 — each counted from both sides.
    violations = [2, 1, 2, 1]
    expected = sum(violations) / (3 * 2) / (1 + max(violations))
    assert rank_loss(pred, mos).item() == pytest.approx(expected)
    assert rank_loss(mos * 10, mos).item() == 0  # same order: no penalty
    assert rank_loss(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0])).item() == 0


def test_lpc_loss_hand_computed_and_scale_free():
    q = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (B=1, T'=1, 2, 2)
    assert lpc_loss(q, 5 * q + 1).item() == pytest.approx(0, abs=1e-6)
    assert lpc_loss(q, -q).item() == pytest.approx(2, abs=1e-6)
    q_hat = torch.tensor([[[[1.0, 3.0], [2.0, 4.0]]]])
    a = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    b = torch.tensor([-1.5, 0.5, -0.5, 1.5])
    assert lpc_loss(q, q_hat).item() == pytest.approx(1 - (a @ b / (a @ a)).item(), abs=1e-6)
    # Mean over videos.
    two = lpc_loss(torch.cat([q, q]), torch.cat([q, -q]))
    assert two.item() == pytest.approx(1.0, abs=1e-6)


def _labelled_clip(b=2, t=6, h=96, w=64, cube=(2, 32, 32)):
    """Every cube of every video filled with a distinct constant: its linear index."""
    nt, nh, nw = t // cube[0], h // cube[1], w // cube[2]
    ids = torch.arange(b * nt * nh * nw, dtype=torch.float32).reshape(b, 1, nt, nh, nw)
    clip = ids.repeat_interleave(cube[0], 2).repeat_interleave(cube[1], 3)
    clip = clip.repeat_interleave(cube[2], 4).expand(b, 3, t, h, w)
    return clip, ids[:, 0]


def test_cube_reassembly_puts_every_cube_in_its_cell():
    clip, ids = _labelled_clip()
    cubes, grid = cut_cubes(clip, (2, 32, 32))
    assert grid == (3, 3, 2) and cubes.shape == (2 * 18, 3, 2, 32, 32)
    # Each cube is uniform, i.e. no cube straddles two cells.
    assert torch.equal(cubes.amax(dim=(1, 2, 3, 4)), cubes.amin(dim=(1, 2, 3, 4)))

    def cube_mean(x):  # a stand-in for model.local_quality: one cell per cube
        return x.mean(dim=(1, 2, 3, 4)).reshape(-1, 1, 1, 1)

    q_hat = cube_quality_map(cube_mean, clip, (2, 32, 32), grid)
    assert torch.equal(q_hat, ids)


def test_cube_remainder_is_left_out_and_other_cube_sizes_are_resampled():
    clip, ids = _labelled_clip(b=1, t=4, h=64, w=64)
    padded = torch.nn.functional.pad(clip, (0, 5, 0, 7, 0, 1))  # partial cubes at the far ends
    q_hat = cube_quality_map(lambda x: x.mean(dim=(1, 3, 4)), padded, (2, 32, 32), (2, 2, 2))
    assert torch.equal(q_hat, ids)
    # [2, 16, 16] cubes give a 4×4 grid per slice, resampled (averaged) onto the 2×2 grid of Q.
    q_hat = cube_quality_map(lambda x: x.mean(dim=(1, 3, 4)), clip, (2, 16, 16), (2, 2, 2))
    assert q_hat.shape == (1, 2, 2, 2)
    torch.testing.assert_close(q_hat, ids)


def test_cube_larger_than_clip_is_rejected():
    with pytest.raises(ValueError, match="larger than the clip"):
        cut_cubes(torch.zeros(1, 3, 2, 16, 16), (2, 32, 32))


def test_total_loss_combines_terms_with_weights():
    torch.manual_seed(0)
    score, mos = torch.randn(6), torch.randn(6)
    q, q_hat = torch.randn(6, 2, 3, 3), torch.randn(6, 2, 3, 3)
    terms = KVQLoss(LossConfig(rank_weight=0.5, lpc_weight=0.05))(score, mos, q, q_hat)
    expected = plcc_loss(score, mos) + 0.5 * rank_loss(score, mos) + 0.05 * lpc_loss(q, q_hat)
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms.as_floats()["lpc"] == pytest.approx(lpc_loss(q, q_hat).item())


class _TinyQualityNet(nn.Module):
    """A quality map per 1×4×4 cell and its mean as the score."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 1, kernel_size=(1, 4, 4), stride=(1, 4, 4))

    def forward(self, x):
        q = self.conv(x)[:, 0]
        return q.mean(dim=(1, 2, 3)), q


def _loss_and_grads(model, clip, mos):
    score, q = model(clip)
    q_hat = cube_quality_map(lambda c: model(c)[1], clip, (1, 4, 4), q.shape[1:])
    KVQLoss()(score, mos, q, q_hat).total.backward()
    return [p.grad.clone() for p in model.parameters()]


def _ddp_worker(rank, world, port, clip, mos, out_file):
    init = f"tcp://127.0.0.1:{port}"
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(_TinyQualityNet())
        n = clip.shape[0] // world
        local = slice(rank * n, (rank + 1) * n)
        grads = _loss_and_grads(model, clip[local], mos[local])
        if rank == 0:
            torch.save(grads, out_file)
        del model
        leave_process_group()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_global_batch_losses_under_two_process_ddp_match_one_process(tmp_path, free_port):
    torch.manual_seed(1)
    clip, mos = torch.randn(8, 3, 2, 8, 8), torch.randn(8)
    torch.manual_seed(0)
    expected = _loss_and_grads(_TinyQualityNet(), clip, mos)
    out_file = tmp_path / "grads.pt"
    mp.spawn(_ddp_worker, args=(2, free_port, clip, mos, str(out_file)), nprocs=2)
    got = torch.load(out_file, weights_only=True)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_score_shifting_biases_get_no_true_gradient():
    """The whole loss is invariant to adding one constant to every score, so the quality head's
    last bias (which does exactly that: the saliency weights average to 1) and the biases in
    front of the saliency softmax get gradients at round-off level only."""
    from kvq import build_model
    from kvq.train.trainer import TrainForward

    torch.manual_seed(0)
    model = build_model("kvq-xs", embed_dim=24, depths=(1, 1, 2, 1), drop_path_rate=0.0)
    model.quality_head.fc_last.bias.data.fill_(0.7)  # its value must not matter either
    forward = TrainForward(model, (2, 32, 32))
    score, q, q_hat = forward(torch.randn(4, 3, 4, 64, 64))
    KVQLoss()(score, torch.tensor([1.0, 4.0, 2.5, 3.0]), q, q_hat).total.backward()
    grads = {n: p.grad.abs().max().item() for n, p in model.named_parameters() if p.grad.numel()}
    largest = max(grads.values())
    assert largest > 1e-3
    for name in ("quality_head.fc_last.bias", "saliency_head.fc_last.bias", "prior_fusion.bias"):
        assert grads[name] < 1e-5 * largest, (name, grads[name], largest)


def test_group_rank_loss_compares_only_videos_of_one_group():
    """Two ladders: inside each the order is right, across them it is wrong — the plain rank
    loss sees violations, the group rank loss none; breaking one ladder's order costs its gap."""
    mos = torch.tensor([1.0, 2.0, 3.0, 4.0])
    groups = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([3.0, 4.0, 1.0, 2.0])  # right inside groups, wrong across
    assert rank_loss(pred, mos) > 0
    assert rank_loss(pred, mos, groups) == 0
    broken = torch.tensor([4.0, 3.0, 1.0, 2.0])  # ladder 0 reversed by a gap of 1
    # 2 violated ordered pairs of the 4 same-group pairs, each costing 1; max violation 1
    assert rank_loss(broken, mos, groups).item() == pytest.approx(2 / 4 / 2)
    assert rank_loss(pred, mos, torch.arange(4)).item() == 0  # no pair at all


def test_group_rank_term_is_weighted_into_the_total():
    score, mos = torch.tensor([4.0, 3.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0, 4.0])
    groups = torch.tensor([0, 0, 1, 1])
    off = KVQLoss(LossConfig(group_rank_weight=0.0))(score, mos, groups=groups)
    on = KVQLoss(LossConfig(group_rank_weight=2.0))(score, mos, groups=groups)
    assert off.group_rank == 0
    torch.testing.assert_close(on.total, off.total + 2.0 * rank_loss(score, mos, groups))


def test_local_label_loss_follows_region_labels_and_skips_flat_ones():
    from kvq.train.losses import local_label_loss

    torch.manual_seed(0)
    labels = torch.rand(3, 7, 7) * 4 + 1
    labels[1] = 3.0  # flat: no spatial signal
    labels[2] = float("nan")  # no region labels
    q = labels[:1, None].repeat(1, 4, 1, 1) * 0.1  # (1, T', 7, 7): the first video's pattern
    q = torch.cat([q, torch.randn(2, 4, 7, 7)])
    assert local_label_loss(q, labels).item() == pytest.approx(0.0, abs=1e-5)
    assert local_label_loss(-q, labels).item() == pytest.approx(2.0, abs=1e-5)
    # A finer map is pooled to the label grid; a batch without usable labels gives 0.
    fine = torch.nn.functional.interpolate(q[:1], size=(14, 14), mode="nearest")
    assert local_label_loss(fine, labels[:1]).item() == pytest.approx(0.0, abs=1e-5)
    q = q.requires_grad_()
    flat = local_label_loss(q[1:], labels[1:])
    flat.backward()
    assert flat.item() == 0.0 and q.grad is not None

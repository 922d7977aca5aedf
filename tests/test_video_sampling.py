"""Temporal sampling, spatial plans, ClipSpec validation and normalisation (no decoding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kvq.video import ClipSpec, normalize_clip, plan_view, sample_segment_indices


def test_inference_indices_are_segment_centred_runs():
    spec = ClipSpec()
    idx = sample_segment_indices(240, spec)
    assert idx.shape == (32,)
    runs = idx.reshape(8, 4)
    assert (np.diff(runs, axis=1) == 2).all()  # 4 frames at stride 2
    centres = runs.mean(axis=1)
    segment_centres = (np.arange(8) + 0.5) * 30 - 0.5
    assert np.abs(centres - segment_centres).max() <= 0.5


def test_inference_indices_are_deterministic():
    """At inference the frames and the view depend on the video alone: any generator or seed
    (or none) gives the same indices and plans, and a generator passed in is not drawn from."""
    rngs = [None, 0, 1, np.random.default_rng(2), np.random.default_rng(3), None]
    for spec in (ClipSpec(), ClipSpec(num_clips=3)):
        for num_frames in (97, 240):  # slack in every segment: a random start would show
            draws = [sample_segment_indices(num_frames, spec, rng=rng) for rng in rngs]
            assert all(np.array_equal(d, draws[0]) for d in draws), num_frames
    for view in ("random_crop", "fragments"):
        spec = ClipSpec(size=(64, 64), view=view, fragment_size=32)
        plans = [plan_view((480, 640), spec, rng=rng) for rng in rngs]
        assert all(plan == plans[0] for plan in plans), view
    gen = np.random.default_rng(4)
    state = gen.bit_generator.state
    sample_segment_indices(97, ClipSpec(num_clips=3), rng=gen)
    plan_view((480, 640), ClipSpec(size=(64, 64), view="random_crop"), rng=gen)
    assert gen.bit_generator.state == state


def test_training_indices_stay_in_their_segment_and_follow_the_rng():
    spec = ClipSpec()
    a = sample_segment_indices(240, spec, train=True, rng=1)
    assert np.array_equal(a, sample_segment_indices(240, spec, train=True, rng=1))
    draws = {tuple(sample_segment_indices(240, spec, train=True, rng=s)) for s in range(8)}
    assert len(draws) > 1
    for seed in range(8):
        runs = sample_segment_indices(240, spec, train=True, rng=seed).reshape(8, 4)
        segment = np.arange(8)[:, None] * 30
        assert ((runs >= segment) & (runs < segment + 30)).all()


@pytest.mark.parametrize("num_frames", [1, 2, 3, 10, 31])
def test_short_videos_wrap_around(num_frames):
    for train in (False, True):
        idx = sample_segment_indices(num_frames, ClipSpec(), train=train, rng=0)
        assert idx.shape == (32,)
        assert idx.min() >= 0 and idx.max() < num_frames
    if num_frames == 1:
        assert (idx == 0).all()


def test_multiple_clips_spread_inside_segments():
    spec = ClipSpec(num_clips=3)
    idx = sample_segment_indices(300, spec)
    assert idx.shape == (3, 32)
    starts = idx[:, ::4]  # first frame of every run
    assert (np.diff(starts, axis=0) > 0).all()  # clip k+1 starts later in every segment
    assert np.array_equal(idx[1], sample_segment_indices(300, ClipSpec()))  # middle = centre


def test_invalid_frame_count():
    with pytest.raises(ValueError, match="num_frames"):
        sample_segment_indices(0, ClipSpec())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_segments": 0},
        {"stride": 0},
        {"size": (0, 448)},
        {"size": (448,)},
        {"view": "zoom"},
        {"timeout_s": 0},
        {"num_clips": 0},
    ],
)
def test_clip_spec_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match="ClipSpec"):
        ClipSpec(**kwargs)


def test_clip_spec_accepts_yaml_lists_and_reports_sizes():
    spec = ClipSpec(size=[224, 320])
    assert spec.size == (224, 320) and spec.output_size == (224, 320)
    assert spec.clip_len == 32
    assert ClipSpec(view="fragments").output_size == (224, 224)


def test_resize_plan_ignores_aspect_ratio():
    plan = plan_view((1080, 1920), ClipSpec(size=(448, 448)))
    assert plan.is_plain_resize and plan.source_size == (448, 448)


def test_centre_crop_is_native_and_centred():
    plan = plan_view((1080, 1920), ClipSpec(size=(448, 448), view="center_crop"), train=True)
    assert plan.source_size == (1080, 1920)  # no scaling
    assert plan.corners == (((1080 - 448) // 2, (1920 - 448) // 2),)


def test_random_crop_is_random_only_in_training():
    spec = ClipSpec(size=(64, 64), view="random_crop")
    assert plan_view((480, 640), spec, train=False).corners == (((480 - 64) // 2, (640 - 64) // 2),)
    corners = {plan_view((480, 640), spec, train=True, rng=s).corners for s in range(6)}
    assert len(corners) > 1
    for ((y, x),) in corners:
        assert 0 <= y <= 480 - 64 and 0 <= x <= 640 - 64


def test_crop_of_small_frame_upscales_keeping_aspect():
    plan = plan_view((30, 40), ClipSpec(size=(60, 60), view="center_crop"))
    assert plan.source_size == (60, 80)
    assert plan.corners == ((0, 10),)


@pytest.mark.parametrize("train", [False, True])
def test_fragments_take_one_patch_per_cell(train):
    spec = ClipSpec(view="fragments", fragment_grid=7, fragment_size=32)
    plan = plan_view((1080, 1920), spec, train=train, rng=3)
    assert plan.source_size == (1080, 1920) and plan.output_size == (224, 224)
    assert len(plan.corners) == 49
    cell_h, cell_w = 1080 // 7, 1920 // 7
    for k, (y, x) in enumerate(plan.corners):
        r, c = divmod(k, 7)
        assert r * cell_h <= y <= (r + 1) * cell_h - 32
        assert c * cell_w <= x <= (c + 1) * cell_w - 32


def test_fragments_upscale_small_frames():
    plan = plan_view((120, 160), ClipSpec(view="fragments"))
    assert min(plan.source_size) == 224 and plan.source_size[1] == 299  # 160 · 224/120 = 298.7


def test_plan_apply_stitches_patches():
    source = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    plan = plan_view((8, 8), ClipSpec(view="fragments", fragment_grid=2, fragment_size=2))
    out = np.zeros((4, 4, 3), np.uint8)
    plan.apply(source, out)
    (y, x) = plan.corners[3]  # bottom-right cell
    assert np.array_equal(out[2:, 2:], source[y : y + 2, x : x + 2])


def test_normalize_clip_values_and_layout():
    frames = torch.zeros(2, 4, 5, 3, dtype=torch.uint8)
    frames[..., 0] = 255
    frames[1, :, :, 1] = 100
    x = normalize_clip(frames)
    assert x.shape == (3, 2, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full((2, 4, 5), (255 - 123.675) / 58.395))
    assert torch.allclose(x[1, 1], torch.full((4, 5), (100 - 116.28) / 57.12))
    assert torch.allclose(x[2], torch.full((2, 4, 5), -103.53 / 57.375))
    batched = normalize_clip(np.stack([frames.numpy()] * 3))
    assert batched.shape == (3, 3, 2, 4, 5)
    assert torch.equal(batched[2], x)

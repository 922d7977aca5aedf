"""The eight quality factors: each changes the clip, only inside its mask, and its measured
labels fall monotonically with severity on fixed content."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kvq.synth import FACTORS, MaskSpec, make_distortion
from kvq.synth.distortions import Exposure, Shake, encode_h264
from kvq.synth.measure import cell_ssim, to_mos, vmaf


def textured_clip(frames: int = 6, height: int = 96, width: int = 160, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 natural-looking content (1/f-like colour noise with hard-edged
    shapes) drifting one pixel per frame, so that motion exists."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    shape = (height + frames, width + frames, 3)
    field = sum(
        gaussian_filter(rng.normal(0, 1, shape), (s, s, 0)) * s for s in (0.7, 2.0, 6.0, 16.0)
    )
    field = 128 + 60 * field / field.std()
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    for _ in range(6):  # discs of flat colour: edges
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(6, 20)
        field[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(20, 235, 3)
    base = np.clip(field, 0, 255).astype(np.uint8)
    return np.stack([base[t : t + height, t : t + width] for t in range(frames)])


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return textured_clip()


def rect_mask(height: int = 96, width: int = 160) -> np.ndarray:
    return MaskSpec("rect", (0.3, 0.25, 0.7, 0.75)).render(height, width)


@pytest.mark.parametrize("factor", FACTORS)
def test_distortion_changes_only_inside_its_mask(clip, factor):
    distortion = make_distortion(factor).sample(np.random.default_rng(3))
    mask = rect_mask()
    out = distortion(clip, 0.8, mask)
    assert out.shape == clip.shape and out.dtype == np.uint8
    outside = mask == 0
    np.testing.assert_array_equal(out[:, outside], clip[:, outside])
    inside = mask == 1
    change = np.abs(out[:, inside].astype(int) - clip[:, inside]).mean()
    assert change > 2.0, f"{factor} barely changed the masked region ({change:.2f})"


@pytest.mark.parametrize("factor", FACTORS)
def test_whole_frame_distortion_changes_everywhere_and_severity_zero_is_identity(clip, factor):
    distortion = make_distortion(factor).sample(np.random.default_rng(4))
    np.testing.assert_array_equal(distortion(clip, 0.0), clip)
    out = distortion(clip, 0.8)
    diff = np.abs(out.astype(int) - clip).mean(axis=(0, 3))  # (H, W)
    # every quarter of the frame is affected
    for quarter in (diff[:48, :80], diff[:48, 80:], diff[48:, :80], diff[48:, 80:]):
        assert quarter.mean() > 1.0, factor


def test_exposure_direction(clip):
    assert Exposure(over=True)(clip, 0.6).mean() > clip.mean() + 10
    assert Exposure(over=False)(clip, 0.6).mean() < clip.mean() - 10


def test_defocus_reaches_blurs_that_flatten_native_resolution_patches():
    # Scored through native-resolution patches, a large frame blurred by several pixels looks
    # flat; the corpus must hold such blurs, each stronger one still taking detail away.
    def detail(clip: np.ndarray) -> float:  # mean horizontal luma gradient of the frame
        return float(np.abs(np.diff(clip[0].astype(np.float32).mean(-1), axis=1)).mean())

    frame = textured_clip(frames=1, height=96, width=640, seed=2)
    blurred = [detail(make_distortion("defocus")(frame, s)) for s in (0.25, 0.5, 0.75, 1.0)]
    assert all(a > 1.3 * b for a, b in itertools.pairwise(blurred)), blurred
    assert blurred[-1] < 0.15 * detail(frame), (blurred, detail(frame))


def test_bad_input_is_rejected(clip):
    noise = make_distortion("noise")
    with pytest.raises(ValueError, match="severity"):
        noise(clip, 1.5)
    with pytest.raises(ValueError, match="uint8"):
        noise(clip.astype(np.float32), 0.5)
    with pytest.raises(ValueError, match="mask shape"):
        noise(clip, 0.5, np.ones((10, 10), np.float32))
    with pytest.raises(ValueError, match="unknown quality factor"):
        make_distortion("sepia")


def _measure(pristine: np.ndarray, distorted: np.ndarray, path) -> tuple[float, float]:
    encode_h264(distorted, str(path), fps=25.0, crf=18, preset="veryfast")
    from kvq.synth.build import _decode

    return vmaf(path, pristine, 25.0), float(cell_ssim(_decode(path), pristine, 4).mean())


MONOTONE_CASES = [(f, {}) for f in FACTORS if f != "exposure"] + [
    ("exposure", {"over": True}),
    ("exposure", {"over": False}),
]


@pytest.mark.parametrize(("factor", "params"), MONOTONE_CASES)
def test_labels_fall_with_severity(tmp_path, factor, params):
    pristine = textured_clip(frames=8, seed=1)
    distortion = make_distortion(factor, params)
    severities = (0.15, 0.5, 1.0)
    vmafs, ssims = zip(
        *(
            _measure(
                distortion.registered(pristine, s), distortion(pristine, s), tmp_path / f"{s}.mp4"
            )
            for s in severities
        ),
        strict=True,
    )
    assert all(a >= b - 0.5 for a, b in itertools.pairwise(vmafs)), (factor, vmafs)
    assert vmafs[0] > vmafs[-1] + 5, (factor, vmafs)
    assert all(a > b for a, b in itertools.pairwise(ssims)), (factor, ssims)
    mos = to_mos(np.array(vmafs))
    assert np.all(np.diff(mos) <= 0) and mos[0] > mos[-1], (factor, mos)


def test_shake_is_scored_by_its_blur_not_its_displacement(tmp_path):
    pristine = textured_clip(frames=8, seed=1)
    shake = Shake(seed=5)
    displaced = shake.registered(pristine, 1.0)
    # the registration is the displacement alone: the same per-frame shifts, no exposure blur
    assert shake.registration() == Shake(seed=5, exposure_blur=False)
    assert np.abs(displaced.astype(int) - pristine).mean() > 5.0
    shaken = shake(pristine, 1.0)
    blur_only = _measure(displaced, shaken, tmp_path / "registered.mp4")[0]
    misaligned = _measure(pristine, shaken, tmp_path / "raw.mp4")[0]
    # against the registered reference only the blur costs; the raw comparison also charges
    # the misalignment, which no single frame shows
    assert blur_only < 99.0 and blur_only > misaligned + 10, (blur_only, misaligned)

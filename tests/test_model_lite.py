"""kvq-lite: the ImageNet EfficientNet-Lite0 stem, Fusion Window stages on top, LPC, caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import kvq
from kvq.models.efficientnet_lite import EfficientNetLite
from kvq.models.lite_backbone import block_moments
from kvq.models.pretrained import IMAGENET_STEM, imagenet_stem_file, read_state_dict
from kvq.train.losses import cube_quality_map, cut_cubes
from kvq.train.trainer import TrainForward
from kvq.video.clip import MEAN, STD

DATA = Path(__file__).parent / "data"
CAT_CLASSES = set(range(281, 286))  # ImageNet's domestic cats (tabby … Egyptian cat)


def lite(**overrides) -> kvq.models.KVQModel:
    torch.manual_seed(0)
    return kvq.build_model("kvq-lite", **overrides).eval()


def test_pretrained_stem_weights_classify_a_real_photograph():
    """The packaged ImageNet weights in our network definition label a cat as a cat (a wrong
    padding, activation or key mapping breaks this)."""
    net = EfficientNetLite().eval()
    state, _ = read_state_dict(imagenet_stem_file())
    net.load_state_dict(state, strict=True)
    rgb = np.asarray(Image.open(DATA / "chelsea_224.jpg").convert("RGB"), dtype=np.float32)
    x = (torch.from_numpy(rgb).permute(2, 0, 1)[None] - 127) / 128
    with torch.no_grad():
        probs = net(x).softmax(-1)[0]
    top = probs.topk(3)
    assert set(top.indices.tolist()) <= CAT_CLASSES
    assert top.values.sum() > 0.5


def test_stem_weights_load_into_kvq_lite_with_a_report():
    model = lite()
    before = model.quality_head.fc_hid.weight.clone()
    report = kvq.load_pretrained(model, IMAGENET_STEM, strict=True)
    assert report.layout == "efficientnet-lite" and report.ok
    assert all(k.startswith("backbone.stem.net.") for k in report.loaded)
    assert report.initialised and not any("stem" in k for k in report.initialised)
    assert any(k.startswith("_fc.") for k in report.ignored)  # the classifier is not kept
    state, _ = read_state_dict(imagenet_stem_file())
    torch.testing.assert_close(
        model.backbone.stem.net._conv_stem.weight, state["_conv_stem.weight"]
    )
    assert torch.equal(model.quality_head.fc_hid.weight, before)


def test_kvq_lite_output_grid_and_priors():
    model = lite()
    x = torch.randn(2, 3, 4, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert out.score.shape == (2,)
    assert out.local_quality.shape == out.saliency.shape == (2, 2, 2, 3)  # T/2, H/32, W/32
    assert out.priors.shape == (2, 4, 2, 2, 3)  # 2 stage-3 + 2 stage-4 blocks
    # S sums to H'·W' in every time slice; a stage-4 prior (column sums of a row softmax over
    # all 12 tokens) sums to the number of tokens.
    torch.testing.assert_close(out.saliency.sum((2, 3)), torch.full((2, 2), 6.0))
    torch.testing.assert_close(out.priors[:, 2:].sum((2, 3, 4)), torch.full((2, 2), 12.0))
    torch.testing.assert_close(out.score, (out.local_quality * out.saliency).mean((1, 2, 3)))


def test_forward_from_a_cached_stem_equals_the_forward():
    model = lite()
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        direct = model(x)
        cached = model.forward_embedded(model.backbone.embed(x).half().float())
    torch.testing.assert_close(cached.score, direct.score, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("attention", ["iwa", "cwa", "fwa"])
@pytest.mark.parametrize("multiscale", [True, False])
def test_ablation_switches_work_on_kvq_lite(attention, multiscale):
    model = lite(attention=attention, multiscale_saliency=multiscale)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 4, 64, 64))
    assert out.priors.shape[1] == (4 if multiscale else 0)
    has_cross = any(".attn.cross." in k for k in model.state_dict())
    assert has_cross == (attention != "iwa")


def test_frozen_stem_keeps_its_statistics_and_gets_no_gradient():
    model = lite()
    model.backbone.stem.freeze()
    model.train()
    assert not model.backbone.stem.training and model.quality_head.training
    bn = model.backbone.stem.net._bn0
    mean = bn.running_mean.clone()
    out = model(torch.randn(2, 3, 4, 64, 64) * 3)
    out.score.sum().backward()
    assert torch.equal(bn.running_mean, mean)
    assert all(p.grad is None for p in model.backbone.stem.parameters())
    assert model.backbone.merge.proj.weight.grad is not None


def test_lpc_runs_cubes_through_the_same_network_cached_or_not():
    """Q̂ of kvq-lite: every [2, 32, 32] cube scored alone gives one cell; from cached stem
    outputs of the cubes it is the same map."""
    model = lite()
    x = torch.randn(2, 3, 4, 64, 96)
    forward = TrainForward(model, (2, 32, 32)).eval()
    with torch.no_grad():
        score, q, q_hat = forward(x)
        cubes, grid = cut_cubes(x, (2, 32, 32))
        cached = forward(model.backbone.embed(x), model.backbone.embed(cubes))
    assert q_hat.shape == q.shape == (2, *grid)
    expected = cube_quality_map(model.local_quality, x, (2, 32, 32), tuple(q.shape[1:]))
    torch.testing.assert_close(q_hat, expected)
    one = model.local_quality(x[:1, :, 2:4, 32:64, 64:96])  # the cube of cell (1, 1, 2)
    torch.testing.assert_close(q_hat[0, 1, 1, 2], one.mean(), atol=1e-5, rtol=1e-5)
    for a, b in zip((score, q, q_hat), cached, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_feature_maps_give_each_strides_features_in_one_pass():
    net = EfficientNetLite().eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        maps = net.feature_maps(x, (2, 8, 16))
        for stride, m in zip((2, 8, 16), maps, strict=True):
            torch.testing.assert_close(m, net.features(x, stride))
    assert [m.shape[-2:] for m in maps] == [(32, 48), (8, 12), (4, 6)]


def test_finer_stem_strides_add_the_block_statistics_of_their_maps():
    """With stem_strides (4, 16) a token's stem features are the 112 stride-16 channels, then
    the mean and standard deviation of the 24 stride-4 channels over its 16×16-pixel block."""
    model = lite(stem_strides=(4, 16))
    stem = model.backbone.stem
    assert stem.channels == 112 + 2 * 24
    assert model.backbone.merge.proj.in_features == 2 * stem.channels
    x = torch.randn(1, 3, 2, 64, 96)
    with torch.no_grad():
        e = stem(x)  # (1, T, C, 4, 6)
        frames = x.transpose(1, 2)[0] * (torch.tensor(STD).view(3, 1, 1) / 128)
        frames = frames + (torch.tensor(MEAN).view(3, 1, 1) - 127) / 128
        fine = stem.net.features(frames, 4)  # (T, 24, 16, 24): 4×4 positions per block
        blocks = fine.reshape(2, 24, 4, 4, 6, 4).permute(0, 1, 2, 4, 3, 5).flatten(-2)
    assert e.shape == (1, 2, 160, 4, 6)
    torch.testing.assert_close(e[0, :, :112], stem.net.features(frames, 16))
    torch.testing.assert_close(e[0, :, 112:136], blocks.mean(-1), atol=1e-5, rtol=1e-5)
    std = blocks.std(-1, unbiased=False)
    torch.testing.assert_close(e[0, :, 136:], std, atol=1e-3, rtol=1e-3)
    with torch.no_grad():
        out = model(x)
    assert out.local_quality.shape == (1, 1, 2, 3)


def test_block_statistics_of_half_precision_maps_are_taken_in_float32():
    # Activations with a large mean and a small spread, as deep CNN channels have: E[x²] − E[x]²
    # in bfloat16 loses the spread to rounding.
    x = 8.0 + 0.05 * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    exact = block_moments(x, torch.Size((2, 2)))
    half = block_moments(x.bfloat16(), torch.Size((2, 2)))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), exact, atol=0.05, rtol=0.01)


def test_stem_strides_are_checked():
    with pytest.raises(ValueError, match="end at 16"):
        kvq.build_model("kvq-lite", stem_strides=(16, 8))
    with pytest.raises(ValueError, match="stride 3"):
        kvq.build_model("kvq-lite", stem_strides=(3, 16))
    with pytest.raises(ValueError, match="CNN stem only"):
        kvq.build_model("kvq-t", stem_strides=(8, 16))


def test_stem_depths_must_match_the_stem():
    with pytest.raises(ValueError, match="depths"):
        kvq.build_model("kvq-lite", depths=(2, 2, 2, 2))
    with pytest.raises(ValueError, match="depths"):
        kvq.build_model("kvq-t", depths=(0, 0, 2, 2))


def test_optimizer_groups_leave_out_a_frozen_stem_or_give_it_its_own_rate():
    from kvq.train.trainer import param_groups

    model = lite()
    stem = {id(p) for p in model.backbone.stem.parameters()}
    groups = param_groups(model, 1e-3, 0.2, 0.05, stem_mult=0.01)
    assert [g["lr"] for g in groups] == pytest.approx([2e-4, 1e-3, 1e-5])
    assert {id(p) for p in groups[2]["params"]} == stem
    model.backbone.stem.freeze()
    groups = param_groups(model, 1e-3, 0.2, 0.05, stem_mult=0.01)
    assert len(groups) == 2
    assert not stem & {id(p) for g in groups for p in g["params"]}


def test_inference_copy_of_the_stem_gives_the_same_features():
    model = lite()
    kvq.load_pretrained(model, IMAGENET_STEM)
    stem = model.backbone.stem.eval()
    fast = stem.inference_copy()
    x = torch.randn(1, 3, 2, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), stem(x), atol=1e-4, rtol=1e-4)
    assert stem.training is False and fast.net is not stem.net
    assert set(model.state_dict()) == set(lite().state_dict())  # the copy adds no keys


def test_prepared_inference_scores_like_the_model_and_training_drops_it():
    model = lite()
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        plain = model(x).score
        model.backbone.prepare_inference()
        torch.testing.assert_close(model(x).score, plain, atol=1e-5, rtol=1e-5)
    model.train()
    assert model.backbone._inference_stem is None


def test_stem_cache_holds_each_views_stem_output_and_is_reused(tmp_path):
    from kvq.data.datasets import VideoQualityDataset
    from kvq.data.labels import VideoLabel
    from kvq.train.stem_cache import StemCacheDataset, build_stem_cache
    from kvq.video import ClipSpec, load_clip, to_model_input
    from video_factory import make_video

    for k in range(2):
        make_video(tmp_path / f"v{k}.mp4", frames=24, size=(64, 96))
    labels = [VideoLabel(f"v{k}.mp4", 2.0 + k, 1.0, 24.0) for k in range(2)]
    labels.append(VideoLabel("missing.mp4", 3.0, 1.0, 24.0))
    spec = ClipSpec(num_segments=2, frames_per_segment=2, stride=1, size=(64, 64),
                    view="random_crop")  # fmt: skip
    dataset = VideoQualityDataset(labels, tmp_path, spec, train=True, substitute_failed=True)
    model = lite(stem_strides=(16,))
    path = tmp_path / "cache.safetensors"
    cache = build_stem_cache(model, dataset, 2, (2, 32, 32), 0, path, 0, False)
    assert cache["embedding"].shape == (3, 2, 4, 112, 4, 4)  # videos, views, T, C, H/16, W/16
    assert cache["cubes"].shape == (3, 2, 8, 2, 112, 2, 2)  # 2×2×2 cubes of 2 frames
    assert cache["readable"].tolist() == [True, True, False]
    # view 1 of video 0 is the stem output of that video's clip drawn with its seed
    clip = load_clip(tmp_path / "v0.mp4", spec, train=True, rng=np.random.default_rng(7919))
    with torch.no_grad():
        expected = model.backbone.stem(to_model_input(clip[None], model))[0]
    torch.testing.assert_close(cache["embedding"][0, 1].float(), expected, atol=2e-2, rtol=2e-2)
    sample = StemCacheDataset(cache, [lb.mos for lb in labels])[(2, 1)]
    assert sample["index"] == 0  # the unreadable video is never served
    mtime = path.stat().st_mtime_ns
    again = build_stem_cache(model, dataset, 2, (2, 32, 32), 0, path, 0, False)
    assert path.stat().st_mtime_ns == mtime and torch.equal(again["embedding"], cache["embedding"])
    # a stem that adds finer strides' statistics gives other features: the cache is rebuilt
    finer = lite(stem_strides=(8, 16))
    finer.backbone.stem.load_state_dict(model.backbone.stem.state_dict())
    rebuilt = build_stem_cache(finer, dataset, 2, (2, 32, 32), 0, path, 0, False)
    assert rebuilt["embedding"].shape == (3, 2, 4, 112 + 2 * 40, 4, 4)


def test_the_bundled_default_weights_are_the_registered_kvq_lite():
    from kvq.models import get_config, load_model
    from kvq.models.bundled import BUNDLED, DEFAULT_WEIGHTS

    model, _ = load_model(BUNDLED[DEFAULT_WEIGHTS].path)
    assert model.config == get_config("kvq-lite")
    assert model.config.stem_strides == (2, 4, 8, 16)


def test_weights_written_before_stem_strides_load_with_the_stride_16_stem(tmp_path):
    """A header without ``stem_strides`` (every kvq-lite file before the field existed) builds
    the stem those weights were trained with: stride-16 features alone."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from kvq.models import load_model, save_pretrained

    old_model = lite(stem_strides=(16,))
    path = save_pretrained(old_model, tmp_path / "new.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["kvq"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del header["model"]["stem_strides"]
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={"kvq": json.dumps(header)})
    loaded, _ = load_model(old)
    assert loaded.config.stem_strides == (16,)
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x).score, old_model(x).score)

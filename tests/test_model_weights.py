"""Weights: Kinetics-400 Video Swin, the authors' KVQ and our layout (docs/design.md, *Weights*).

Neither foreign file can be downloaded here: the tests write files of the same layout (keys and
shapes from tests/data/*.tsv, the key lists of the published files) filled with random values.
"""

from __future__ import annotations

import pytest
import torch

import kvq
from kvq.models import WeightsError, load_model, save_pretrained
from kvq.models.pretrained import read_state_dict


class Payload:
    """Stands for any pickled object whose loading would run code from elsewhere."""


def random_checkpoint(keys: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys.items():
        if key.endswith("relative_position_index"):
            continue  # a buffer: filled from the model below so that it stays valid
        state[key] = torch.randn(shape, generator=g)
    return state


def with_index(state, model, prefix):
    index = model.backbone.layers[0].blocks[0].attn.relative_position_index
    for key in list(state):
        if key.endswith("attn.qkv.weight"):
            state[key.replace("qkv.weight", "relative_position_index")] = index.clone()
    return state


@pytest.fixture(scope="module")
def kvq_t():
    return kvq.build_model("kvq-t").eval()


def test_kinetics_checkpoint_loads_and_initialises_cwa(tmp_path, kvq_t, reference_keys):
    keys = reference_keys("video_swin_t_k400_keys.tsv")
    state = with_index(random_checkpoint(keys), kvq_t, "backbone.")
    path = tmp_path / "swin_tiny_patch244_window877_kinetics400_1k.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 30}}, path)
    report = kvq.load_pretrained(kvq_t, path)
    assert report.layout == "video-swin-k400"
    assert report.ok, str(report)
    assert sorted(report.ignored) == ["cls_head.fc_cls.bias", "cls_head.fc_cls.weight"]
    assert set(report.initialised) == {
        k for k in kvq_t.state_dict() if not k.startswith("backbone.")
    }
    assert len(report.copied) == 8 * 4  # qkv/proj weight/bias of 6 + 2 FWA blocks
    own = kvq_t.state_dict()
    for key, value in state.items():
        if key.startswith("backbone."):
            assert torch.equal(own[key], value), key
    for stage in (2, 3):
        for block in kvq_t.backbone.layers[stage].blocks:
            for name in ("qkv", "proj"):
                iwa, cwa = getattr(block.attn, name), getattr(block.attn.cross, name)
                assert torch.equal(iwa.weight, cwa.weight) and torch.equal(iwa.bias, cwa.bias)
                assert iwa.weight.data_ptr() != cwa.weight.data_ptr()  # copies, not shared


def test_kinetics_checkpoint_into_cwa_only_model(tmp_path, reference_keys):
    model = kvq.build_model("kvq-t", attention="cwa")
    keys = reference_keys("video_swin_t_k400_keys.tsv")
    state = with_index(random_checkpoint(keys), model, "backbone.")
    torch.save(state, tmp_path / "k400.pth")
    report = kvq.load_pretrained(model, tmp_path / "k400.pth")
    assert report.ok, str(report)
    qkv = "backbone.layers.2.blocks.3.attn.qkv.weight"
    assert torch.equal(model.state_dict()[qkv.replace("attn.", "attn.cross.")], state[qkv])
    assert qkv in report.ignored


def test_authors_checkpoint_round_trips(tmp_path, kvq_t, reference_keys):
    keys = reference_keys("kvq_authors_keys.tsv")
    state = random_checkpoint(keys, seed=1)
    index = kvq_t.backbone.layers[0].blocks[0].attn.relative_position_index
    for key in keys:
        if key.endswith("relative_position_index"):
            state[key] = index.clone()
    torch.save({"state_dict": state}, tmp_path / "kvq_authors.pth")
    report = kvq.load_pretrained(kvq_t, tmp_path / "kvq_authors.pth", strict=True)
    assert report.layout == "kvq-authors"
    assert not report.initialised and not report.ignored and report.ok
    own = kvq_t.state_dict()
    assert len(report.loaded) == len(own) == len(keys)
    cross = "fragments_backbone.layers.3.blocks.1.attn.cross_windowattn.qkv.weight"
    assert torch.equal(own["backbone.layers.3.blocks.1.attn.cross.qkv.weight"], state[cross])
    assert torch.equal(own["prior_fusion.weight"], state["weight_conv.weight"])
    assert torch.equal(own["saliency_head.fc_hid.weight"], state["weight_head.fc_hid.weight"])
    assert torch.equal(own["quality_head.fc_last.bias"], state["vqa_head.fc_last.bias"])


def test_own_format_round_trips_with_config(tmp_path):
    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", embed_dim=24, depths=(1, 1, 2, 1), topk=(3, 2)).eval()
    with torch.no_grad():
        model.prior_fusion.weight.normal_()
    path = save_pretrained(model, tmp_path / "w.safetensors", {"input": {"size": [64, 64]}})
    rebuilt, header = load_model(path)
    assert rebuilt.config == model.config
    assert header["input"] == {"size": [64, 64]}
    clip = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(clip).score, model(clip).score, rtol=0, atol=0)
    report = kvq.load_pretrained(kvq.build_model("kvq-xs", **_arch(model)), path)
    assert report.layout == "kvq" and report.ok
    derived = [k for k in model.state_dict() if k.endswith("relative_position_index")]
    assert sorted(report.initialised) == sorted(derived)  # computed, not stored
    assert len(report.loaded) == len(model.state_dict()) - len(derived)


def test_half_precision_file_loads_as_float32(tmp_path):
    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", embed_dim=24, depths=(1, 1, 2, 1)).eval()
    path = save_pretrained(model, tmp_path / "half.safetensors", dtype=torch.float16)
    full = save_pretrained(model, tmp_path / "full.safetensors")
    assert path.stat().st_size < 0.6 * full.stat().st_size
    rebuilt, _ = load_model(path)
    assert all(p.dtype == torch.float32 for p in rebuilt.parameters())
    for key, value in model.state_dict().items():
        expected = value.half().to(value.dtype) if value.is_floating_point() else value
        assert torch.equal(rebuilt.state_dict()[key], expected), key


def _arch(model):
    cfg = model.config
    return dict(embed_dim=cfg.embed_dim, depths=cfg.depths, topk=cfg.topk)


def test_missing_and_unexpected_keys_are_reported(tmp_path, kvq_t):
    iwa_model = kvq.build_model("kvq-t", attention="iwa")
    path = save_pretrained(kvq_t, tmp_path / "fwa.safetensors")
    report = kvq.load_pretrained(iwa_model, path)
    assert not report.missing
    assert len(report.unexpected) == 8 * 4 and all(".cross." in k for k in report.unexpected)
    with pytest.raises(WeightsError, match="unexpected"):
        kvq.load_pretrained(iwa_model, path, strict=True)


def test_shape_mismatch_names_the_layout(tmp_path):
    small = kvq.build_model("kvq-xs", embed_dim=24, depths=(1, 1, 2, 1))
    path = save_pretrained(small, tmp_path / "small.safetensors")
    with pytest.raises(WeightsError, match=r"kvq's own layout.*do not fit"):
        kvq.load_pretrained(kvq.build_model("kvq-xs"), path)


def test_unknown_layout_and_unsafe_pickle_are_refused(tmp_path, kvq_t):
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="unrecognised weights layout"):
        kvq.load_pretrained(kvq_t, tmp_path / "other.pth")
    # An object that needs arbitrary code to unpickle must be refused, not executed.
    torch.save({"state_dict": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="refused to unpickle"):
        read_state_dict(tmp_path / "evil.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(WeightsError, match="safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")
    with pytest.raises(WeightsError, match="no such"):
        read_state_dict(tmp_path / "absent.pth")


def test_load_model_needs_our_config(tmp_path):
    from safetensors.torch import save_file

    save_file({"quality_head.fc_hid.weight": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(WeightsError, match="no kvq config"):
        load_model(tmp_path / "bare.safetensors")


@pytest.fixture(scope="module")
def k400_file(tmp_path_factory, kvq_t, reference_keys):
    state = with_index(random_checkpoint(reference_keys("video_swin_t_k400_keys.tsv")), kvq_t, "")
    path = tmp_path_factory.mktemp("k400") / "swin_tiny_k400.pth"
    torch.save({"state_dict": state}, path)
    return path


def test_one_route_refuses_weights_that_leave_heads_at_initialisation(k400_file, tmp_path):
    with pytest.raises(WeightsError) as refused:
        kvq.models.load(k400_file)  # default arch kvq-t, strict
    message = str(refused.value)
    assert str(k400_file) in message and "at initialisation" in message
    assert "quality_head" in message and "saliency_head" in message
    assert "--allow-partial-weights" in message
    model, meta = kvq.models.load(k400_file, strict=False)
    assert meta["report"].layout == "video-swin-k400" and meta["path"] == str(k400_file)
    assert any(k.startswith("quality_head.") for k in meta["report"].initialised)
    assert not model.training


def test_one_route_rebuilds_our_own_weights_and_checks_their_normalisation(tmp_path):
    torch.manual_seed(0)
    tiny = kvq.build_model("kvq-xs", embed_dim=24, depths=(1, 1, 2, 1))
    path = save_pretrained(tiny, tmp_path / "own.safetensors", {"input": {"size": [64, 64]}})
    model, meta = kvq.models.load(path, arch="kvq-t")  # the header decides, not arch
    assert meta["normalization"] == {
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
    }
    assert model.config == tiny.config and meta["report"].ok and meta["input"] == {"size": [64, 64]}
    other = save_pretrained(
        tiny,
        tmp_path / "other.safetensors",
        {"normalization": {"mean": [0.5] * 3, "std": [0.5] * 3}},
    )
    with pytest.raises(WeightsError, match="expects input normalised"):
        kvq.models.load(other)


@pytest.mark.slow
def test_kvq_score_refuses_a_kinetics_backbone_unless_asked(k400_file, tmp_path, capsys):
    from PIL import Image

    from kvq.cli.main import main

    image = tmp_path / "grey.png"
    Image.new("RGB", (64, 48), (128, 128, 128)).save(image)
    args = ["score", str(image), "--weights", str(k400_file), "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "quality_head" in err and "at initialisation" in err
    assert main([*args, "--allow-partial-weights"]) == 0
    captured = capsys.readouterr()
    assert "left" in captured.err and "at initialisation" in captured.err  # the load report
    assert "grey.png" in captured.out

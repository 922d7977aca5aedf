"""Fusion Window Attention, saliency priors and the KVQ heads (docs/design.md, *Backbone* on)."""

from __future__ import annotations

import pytest
import torch

import kvq
from kvq.models.swin3d import CrossWindowAttention, _merge_heads, _split_heads, saliency_prior

TINY = dict(embed_dim=16, depths=(1, 1, 2, 2), num_heads=(1, 2, 2, 4), window_size=(2, 3, 3))


def random_qkv(b=2, nw=6, h=2, n=5, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, nw, h, n, d, generator=g) for _ in range(3)]


def test_routing_selects_highest_affinity_windows():
    q, k, _ = random_qkv()
    cwa = CrossWindowAttention(dim=8, num_heads=2, topk=3)
    indices, weights = cwa.route(q, k)
    scale = q.shape[-1] ** -0.5
    # brute force: affinity of query window i and key window j, per batch and head
    for b in range(q.shape[0]):
        for h in range(q.shape[2]):
            qm, km = q[b, :, h].mean(1), k[b, :, h].mean(1)  # (nW, d)
            aff = torch.stack([torch.stack([(qi * scale) @ kj for kj in km]) for qi in qm])
            best = aff.argsort(dim=1, descending=True)[:, :3]
            assert torch.equal(indices[b, h].sort(1).values, best.sort(1).values)
            top = aff.gather(1, indices[b, h])
            torch.testing.assert_close(weights[b, h], top.softmax(-1))


def test_topk_is_capped_at_number_of_windows():
    q, k, _ = random_qkv(nw=3)
    indices, weights = CrossWindowAttention(8, 2, topk=8).route(q, k)
    assert indices.shape[-1] == 3 and weights.shape[-1] == 3


def test_cwa_with_all_windows_is_attention_over_all_weighted_tokens():
    """k = nW: each window attends to every token, keys and values scaled by its routing weight."""
    q, k, v = random_qkv()
    b, nw, h, n, d = q.shape
    cwa = CrossWindowAttention(dim=h * d, num_heads=h, topk=nw)
    indices, weights = cwa.route(q, k)
    out = cwa.attend(q, k, v, indices, weights)
    scale = d**-0.5
    for bi in range(b):
        for hi in range(h):
            qm, km = q[bi, :, hi].mean(1), k[bi, :, hi].mean(1)
            r = ((qm * scale) @ km.T).softmax(-1)  # (nW, nW) routing weights of all windows
            for w in range(nw):
                keys = (k[bi, :, hi] * r[w, :, None, None]).reshape(nw * n, d)
                vals = (v[bi, :, hi] * r[w, :, None, None]).reshape(nw * n, d)
                expected = ((q[bi, w, hi] * scale) @ keys.T).softmax(-1) @ vals
                torch.testing.assert_close(out[bi, w, hi], expected, atol=1e-5, rtol=1e-5)


def test_routing_and_prior_carry_no_gradient():
    x = torch.randn(1, 4, 5, 8, requires_grad=True)
    cwa = CrossWindowAttention(dim=8, num_heads=2, topk=2)
    out, q, k = cwa(x)
    indices, weights = cwa.route(q, k)
    assert q.requires_grad and not weights.requires_grad and not indices.requires_grad
    prior = saliency_prior(q.flatten(2, 3).reshape(1, 20, 8), k.flatten(2, 3).reshape(1, 20, 8))
    assert not prior.requires_grad
    # The gradient that reaches x is the one of attention with the routing held constant.
    out.sum().backward()
    x2 = x.detach().clone().requires_grad_()
    q2, k2, v2 = _split_heads(cwa.qkv(x2), 2)
    fixed = [t.detach().clone() for t in cwa.route(q2.detach(), k2.detach())]
    cwa.proj(_merge_heads(cwa.attend(q2, k2, v2, *fixed))).sum().backward()
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad, x2.grad)


def test_chunked_prior_equals_dense():
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 50, 8, generator=g), torch.randn(2, 50, 8, generator=g)
    dense = (q @ k.transpose(1, 2)).softmax(-1).sum(1)
    torch.testing.assert_close(saliency_prior(q, k, chunk=7), dense)
    torch.testing.assert_close(dense.sum(-1), torch.full((2,), 50.0))
    valid = torch.rand(50, generator=g) > 0.3
    masked = saliency_prior(q, k, valid, chunk=4)
    sub = (q[:, valid] @ k[:, valid].transpose(1, 2)).softmax(-1).sum(1)
    torch.testing.assert_close(masked[:, valid], sub)
    assert torch.all(masked[:, ~valid] == 0)


@pytest.mark.parametrize("attention", ["fwa", "cwa", "iwa"])
def test_block_prior_is_unshifted_onto_the_token_grid(attention):
    """The prior of a shifted, padded block equals the dense prior computed on the token grid,
    from CWA's q, k (IWA's where there is no CWA branch)."""
    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2), attention=attention).eval()
    model.set_runtime(prior_chunk=5)  # chunks that do not divide the 96 tokens
    block = model.backbone.layers[2].blocks[1]  # shifted FWA block
    assert any(block.shift)
    x = torch.randn(1, 3, 5, 4, 64)  # grid 3x5x4, padded to 4x6x6 by the (2,3,3) window
    with torch.no_grad():
        _, prior = block(x, need_prior=True)
        assert block(x)[1] is None
        tokens = block.norm1(x).reshape(1, -1, 64)
        qkv = block.attn.qkv if attention == "iwa" else block.attn.cross.qkv
        q, k, _ = qkv(tokens).chunk(3, -1)
        head_dim = 64 // 2
        dense = ((q * head_dim**-0.5) @ k.transpose(1, 2)).softmax(-1).sum(1).view(1, 3, 5, 4)
    torch.testing.assert_close(prior, dense, atol=1e-5, rtol=1e-5)


def test_model_outputs_and_saliency_normalisation():
    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2)).eval()
    with torch.no_grad():
        model.prior_fusion.weight.normal_()  # non-zero so the priors matter
        out = model(torch.randn(2, 3, 8, 96, 64))
    assert out.score.shape == (2,)
    assert out.local_quality.shape == out.saliency.shape == (2, 4, 3, 2)
    assert out.priors.shape == (2, 4, 4, 3, 2)  # 2 stage-3 + 2 stage-4 blocks
    torch.testing.assert_close(out.saliency.sum(dim=(2, 3)), torch.full((2, 4), 6.0))
    torch.testing.assert_close(out.score, (out.local_quality * out.saliency).mean((1, 2, 3)))


def test_zero_fusion_means_saliency_from_head_alone():
    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2)).eval()
    clip = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        out = model(clip)
        logits = model.saliency_head(model.backbone(clip))[:, 0]
        expected = logits.flatten(2).softmax(-1).view_as(logits) * 4
        torch.testing.assert_close(out.saliency, expected)
        model.prior_fusion.weight.fill_(1.0)
        assert not torch.allclose(model(clip).saliency, expected)


@pytest.mark.parametrize("attention", ["iwa", "cwa", "fwa"])
def test_attention_variants_and_determinism(attention):
    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2), attention=attention).eval()
    clip = torch.randn(1, 3, 8, 64, 96)
    with torch.no_grad():
        a, b = model(clip), model(clip)
    assert torch.equal(a.score, b.score) and torch.equal(a.saliency, b.saliency)
    assert a.priors.shape[1] == 4  # every variant yields the 4 stage-3/4 priors
    block = model.backbone.layers[2].blocks[0].attn
    assert hasattr(block, "cross") == (attention != "iwa")
    assert hasattr(block, "qkv") == (attention != "cwa")


def test_multiscale_saliency_off():
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2), multiscale_saliency=False).eval()
    assert model.prior_fusion is None
    with torch.no_grad():
        out = model(torch.randn(1, 3, 4, 64, 64))
    assert out.priors.shape[1] == 0
    assert not any(k.startswith("prior_fusion") for k in model.state_dict())


def test_local_quality_matches_forward():
    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2)).eval()
    clip = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.local_quality(clip), model(clip).local_quality)
        assert model.local_quality(clip[:, :, :2, :32, :32]).shape == (2, 1, 1, 1)


def test_build_model_rejects_unknown_names_and_bad_values():
    with pytest.raises(ValueError, match="unknown architecture"):
        kvq.build_model("kvq-huge")
    with pytest.raises(TypeError, match="unknown override"):
        kvq.build_model("kvq-t", attnetion="iwa")
    with pytest.raises(ValueError, match="attention"):
        kvq.build_model("kvq-t", attention="global")
    assert kvq.build_model("kvq-t", topk=[4, 2]).config.topk == (4, 2)


def test_paper_architecture_dimensions():
    model = kvq.build_model("kvq-t")
    cfg = model.config
    assert cfg.num_priors == 8 and model.prior_fusion.in_channels == 8
    assert [s.blocks[0].attn.cross.topk for s in model.backbone.layers[2:]] == [8, 4]
    assert model.backbone.num_features == 768
    assert torch.all(model.prior_fusion.weight == 0)


@pytest.mark.parametrize("impl", ["chunked", "fused"])
def test_prior_memory_is_bounded(impl):
    """At stage 3 of a 32×448² clip (12,544 tokens) no intermediate holds more than chunk×L
    (chunked) or a few L×C (fused): never the L×L score matrix."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class LargestTensor(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.numel())
            return out

    length, chunk = 16 * 28 * 28, 256
    q, k = torch.randn(1, length, 4), torch.randn(1, length, 4)
    with LargestTensor() as probe:
        prior = saliency_prior(q, k, chunk=chunk, impl=impl)
    bound = chunk * length if impl == "chunked" else 8 * length  # head size padded to 8
    assert probe.largest <= bound < length * length // 40
    assert prior.sum().item() == pytest.approx(length, rel=1e-4)


def test_fused_prior_equals_dense():
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(2, 60, 12, generator=g), torch.randn(2, 60, 12, generator=g)
    dense = (q @ k.transpose(1, 2)).softmax(-1).sum(1)
    torch.testing.assert_close(saliency_prior(q, k, impl="fused"), dense, rtol=1e-5, atol=1e-5)
    valid = torch.rand(60, generator=g) > 0.3
    masked = saliency_prior(q, k, valid, impl="fused")
    sub = (q[:, valid] @ k[:, valid].transpose(1, 2)).softmax(-1).sum(1)
    torch.testing.assert_close(masked[:, valid], sub, rtol=1e-5, atol=1e-5)
    assert torch.all(masked[:, ~valid] == 0)


@pytest.mark.parametrize("impl", ["chunked", "fused"])
def test_bf16_priors_stay_within_tolerance(impl):
    """The priors carry no gradient and only feed the saliency map, so bf16 is allowed there
    within this stated tolerance of the fp32 result: ≤ 2 % per token, ≤ 0.5 % over all."""
    g = torch.Generator().manual_seed(6)
    length, dim = 1568, 384  # stage-3 width of kvq-t, logits of a few units
    q = torch.randn(1, length, dim, generator=g) * 1.5 * dim**-0.5
    k = torch.randn(1, length, dim, generator=g) * 1.5
    ref = saliency_prior(q.double(), k.double()).float()
    low = saliency_prior(q.bfloat16(), k.bfloat16(), impl=impl)
    error = (low - ref).abs()
    assert (error / ref).max() <= 0.02
    assert error.sum() / ref.sum() <= 0.005


def test_model_prior_implementations_agree():
    """The same weights give the same priors and score with either implementation, also with
    padded windows (the 5×6 token grid is not a multiple of the 3×3 window)."""
    torch.manual_seed(1)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2)).eval()
    torch.nn.init.normal_(model.prior_fusion.weight)
    x = torch.randn(1, 3, 4, 160, 192)
    with torch.no_grad():
        chunked = model(x)
        model.set_runtime(prior_impl="fused")
        fused = model(x)
    assert chunked.priors.abs().sum() > 0
    torch.testing.assert_close(fused.priors, chunked.priors, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.saliency, chunked.saliency, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="prior_impl"):
        model.set_runtime(prior_impl="auto")
    assert model.runtime.prior_impl == "fused"  # a refused change changes nothing


# The old code path's outputs (prior_chunk, prior_impl and grad_checkpointing still KVQConfig
# fields, prior_chunk threaded through the forwards) on this tiny model and clip, recorded
# before they became runtime settings: the refactor must not change what the model computes.
RECORDED_SCORE = [-0.008582177571952343, 0.021348334848880768]
RECORDED_SALIENCY = [0.9225811, 0.7018218, 1.3378372, 1.3406562, 1.1648105, 1.2256521]
RECORDED_PRIORS = [0.9991742, 0.9991968, 1.0066943, 0.9961631, 0.9994869, 1.0003705, 1.0164514]
RECORDED_PRIORS += [0.9815911]


@pytest.mark.parametrize("impl", ["chunked", "fused"])
def test_outputs_match_the_recorded_ones(impl):
    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2)).eval()
    torch.nn.init.normal_(model.prior_fusion.weight, std=0.5)
    x = torch.randn(2, 3, 4, 160, 192, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model.set_runtime(prior_impl=impl, prior_chunk=7)(x)
    assert out.priors.shape == (2, 4, 2, 5, 6)
    close = dict(rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.score.tolist(), RECORDED_SCORE, **close)
    torch.testing.assert_close(out.saliency.flatten()[::23].tolist(), RECORDED_SALIENCY, **close)
    torch.testing.assert_close(out.priors.flatten()[::61].tolist(), RECORDED_PRIORS, **close)


def test_runtime_settings_are_not_architecture():
    """They live on the built model (one way to set each), never in the config or a header."""
    from kvq.models.kvq import RuntimeOptions

    model = kvq.build_model("kvq-xs", **TINY)
    assert model.runtime == RuntimeOptions(prior_impl="chunked")  # chunked on every device
    assert not KVQ_RUNTIME & set(model.config.to_dict())
    for name, value in [("grad_checkpointing", True), ("prior_chunk", 64), ("prior_impl", "x")]:
        with pytest.raises(TypeError, match="set_runtime"):
            kvq.build_model("kvq-xs", **{name: value})
    assert model.set_runtime(grad_checkpointing=True) is model
    assert all(stage.use_checkpoint for stage in model.backbone.layers)
    assert model.runtime == RuntimeOptions(grad_checkpointing=True)
    model.set_runtime(prior_chunk=64)  # the others keep their values
    attns = fusion_attentions(model)
    assert attns and all((m.prior_impl, m.prior_chunk) == ("chunked", 64) for m in attns)
    assert model.runtime.grad_checkpointing and model.backbone.layers[0].use_checkpoint
    with pytest.raises(TypeError):
        model.set_runtime(prior_chunks=64)
    for bad in ({"prior_chunk": 0}, {"prior_chunk": 2.0}, {"grad_checkpointing": "yes"}):
        with pytest.raises(ValueError):
            model.set_runtime(**bad)


KVQ_RUNTIME = {"prior_chunk", "prior_impl", "grad_checkpointing"}


def fusion_attentions(model):
    from kvq.models.swin3d import FusionWindowAttention

    return [m for m in model.modules() if isinstance(m, FusionWindowAttention)]


def test_headers_with_the_legacy_runtime_keys_load(tmp_path):
    """Weights written while the runtime settings were config fields still load; the keys are
    dropped and the model computes the same. The bundled weights are written without them."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from kvq.models import KVQConfig, load_model, save_pretrained
    from kvq.models.bundled import BUNDLED, DEFAULT_WEIGHTS

    bundled = BUNDLED[DEFAULT_WEIGHTS].path
    with safe_open(str(bundled), framework="pt") as f:
        assert not KVQ_RUNTIME & set(json.loads(f.metadata()["kvq"])["model"])
    model, _ = load_model(bundled)
    assert model.config.stem == "efficientnet-lite0" and model.runtime.prior_impl == "chunked"

    torch.manual_seed(0)
    tiny = kvq.build_model("kvq-xs", **TINY, topk=(2, 2)).eval()
    path = save_pretrained(tiny, tmp_path / "new.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["kvq"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert not KVQ_RUNTIME & set(header["model"])  # new files do not write them
    legacy = {"prior_chunk": 512, "prior_impl": "auto", "grad_checkpointing": True}
    header["model"].update(legacy)
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={"kvq": json.dumps(header)})
    loaded, read = load_model(old)
    assert read["model"]["prior_impl"] == "auto"  # the header itself is returned as it is
    assert loaded.config == tiny.config and loaded.runtime == tiny.runtime
    assert KVQConfig.from_dict(header["model"]) == tiny.config  # kvq eval's route
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).score, tiny(x).score, rtol=0, atol=0)


def test_training_configs_set_gradient_checkpointing_on_the_built_model():
    """``model.grad_checkpointing`` of a training config (configs/kvq_t_lsvq.yaml sets it) is
    applied to the built model as a runtime setting."""
    from pathlib import Path
    from types import SimpleNamespace

    from kvq.train.config import load_config
    from kvq.train.trainer import Trainer

    path = Path(__file__).resolve().parent.parent / "configs" / "kvq_t_lsvq.yaml"
    small = {"arch": "kvq-xs", "overrides": TINY, "pretrained": None}
    config = load_config(path, {"model": small})
    assert config.model.grad_checkpointing
    model = Trainer._build_model(SimpleNamespace(config=config, _log=print))
    assert model.runtime.grad_checkpointing
    assert all(stage.use_checkpoint for stage in model.backbone.layers)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(1)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2), drop_path_rate=0.0, head_dropout=0.0)
    torch.nn.init.normal_(model.prior_fusion.weight)
    clip = torch.randn(1, 3, 4, 64, 64)
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_runtime(grad_checkpointing=enable).train()
        model(clip).score.sum().backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.fixture
def fresh_kernel_check():
    """:func:`fused_prior_available` forgets its answers before and after the test."""
    from kvq.models import swin3d

    swin3d.fused_prior_available.cache_clear()
    yield swin3d
    swin3d.fused_prior_available.cache_clear()


def test_fused_prior_falls_back_once_where_the_kernel_is_missing(monkeypatch, fresh_kernel_check):
    """A missing kernel is found by one probe: the model warns once, computes the chunked prior
    (the same priors) and is not changed; the kernel is not tried again."""
    import warnings

    swin3d = fresh_kernel_check
    torch.manual_seed(2)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2)).eval()
    x = torch.randn(1, 3, 4, 96, 96)
    with torch.no_grad():
        expected = model(x).priors
    calls = []

    def missing_kernel(q, k):
        calls.append(q.shape)
        raise NotImplementedError("Could not run 'aten::_scaled_dot_product_x' on this backend")

    monkeypatch.setattr(swin3d, "_attention_logsumexp", missing_kernel)
    model.set_runtime(prior_impl="fused")
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = model(x).priors, model(x).priors
    messages = [str(w.message) for w in caught if "prior unavailable" in str(w.message)]
    assert len(messages) == 1 and "Could not run" in messages[0]
    assert len(calls) == 1  # the probe, once, not once per block or per forward
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)
    assert model.runtime.prior_impl == "fused"
    assert all(m.prior_impl == "fused" for m in fusion_attentions(model))


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: an illegal memory access was encountered"),
    ],
)
def test_errors_in_the_fused_prior_are_raised(monkeypatch, fresh_kernel_check, error):
    """Out of memory (or any other error than a missing kernel) is never taken for a missing
    kernel: not in the forward, not in the probe; nothing falls back, nothing is cached."""
    swin3d = fresh_kernel_check
    torch.manual_seed(2)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2)).eval().set_runtime(prior_impl="fused")
    x = torch.randn(1, 3, 4, 96, 96)
    real_kernel = swin3d._attention_logsumexp

    def failing(q, k):
        raise error

    for warm in (True, False):  # the probe has run already / the probe itself fails
        swin3d.fused_prior_available.cache_clear()
        if warm:
            assert swin3d.fused_prior_available(torch.device("cpu"), torch.float32)
        monkeypatch.setattr(swin3d, "_attention_logsumexp", failing)
        with torch.no_grad(), pytest.raises(RuntimeError) as raised:
            model(x)
        assert raised.value is error
        monkeypatch.setattr(swin3d, "_attention_logsumexp", real_kernel)
        assert model.runtime.prior_impl == "fused"
        with torch.no_grad():
            assert model(x).priors.abs().sum() > 0  # the kernel works again: no fallback kept


def test_private_attention_ops_sit_behind_one_version_guarded_function(
    monkeypatch, fresh_kernel_check
):
    import inspect
    from pathlib import Path

    from torch.torch_version import TorchVersion

    swin3d = fresh_kernel_check
    guarded = inspect.getsource(swin3d._attention_logsumexp)
    for path in Path(swin3d.__file__).parent.parent.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        mentions = text.count("_scaled_dot_product_")
        assert mentions == (
            guarded.count("_scaled_dot_product_") if path.name == "swin3d.py" else 0
        )
    q = torch.randn(1, 8, 8)
    monkeypatch.setattr(torch, "__version__", TorchVersion("2.2.2"))
    with pytest.raises(swin3d.FusedKernelUnavailable, match=r"older than 2\.3"):
        swin3d._attention_logsumexp(q, q)
    with pytest.warns(UserWarning, match="using chunked"):
        assert not swin3d.fused_prior_available(torch.device("cpu"), torch.float32)
    model = kvq.build_model("kvq-xs", **TINY, topk=(2, 2)).eval()
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        chunked = model(x).priors
        torch.testing.assert_close(model.set_runtime(prior_impl="fused")(x).priors, chunked)


def test_training_after_inference_mode_reuses_the_cached_masks():
    # Scoring (inference mode) fills the shifted-window mask cache; a training step after it
    # in the same process must be able to backpropagate through the cached masks.
    from kvq.models.swin3d import shift_mask_patterns

    shift_mask_patterns.cache_clear()
    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", embed_dim=24, depths=(2, 2, 2, 2))  # shifted blocks
    clip = torch.randn(1, 3, 8, 128, 128)
    with torch.inference_mode():
        model.eval()(clip)
    assert shift_mask_patterns.cache_info().currsize > 0
    model.train()(clip).score.sum().backward()
    assert all(p.grad is not None for p in model.quality_head.parameters())

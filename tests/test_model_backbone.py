"""The backbone with plain window attention is the official Video Swin computation.

The reference below is written independently of kvq's window code: it loops over every window
explicitly, builds the shifted-window mask from region labels and the relative position index
from its definition, and runs softmax attention by hand.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from kvq.models.swin3d import SwinTransformer3D


def reference_index(window):
    """Relative position index by definition: one table row per (Δd, Δh, Δw)."""
    coords = list(itertools.product(*(range(k) for k in window)))
    _, wh, ww = window
    index = torch.empty(len(coords), len(coords), dtype=torch.long)
    for i, a in enumerate(coords):
        for j, b in enumerate(coords):
            dd, dh, dw = (a[0] - b[0] + window[0] - 1, a[1] - b[1] + wh - 1, a[2] - b[2] + ww - 1)
            index[i, j] = dd * (2 * wh - 1) * (2 * ww - 1) + dh * (2 * ww - 1) + dw
    return index


def region_labels(grid, window, shift):
    labels = torch.zeros(grid, dtype=torch.long)
    if not any(shift):
        return labels
    cuts = []
    for g, k, s in zip(grid, window, shift):
        cuts.append([(0, g - k), (g - k, g - s), (g - s, g)] if s else [(0, g)])
    for n, (a, b, c) in enumerate(itertools.product(*cuts)):
        labels[a[0] : a[1], b[0] : b[1], c[0] : c[1]] = n + 1
    return labels


def reference_attention(attn, tokens, mask, index):
    """tokens (B, N, C); explicit softmax(q·scale kᵀ + bias + mask) v."""
    b, n, c = tokens.shape
    h = attn.num_heads
    q, k, v = (attn.qkv(tokens).view(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)).unbind(0)
    bias = attn.relative_position_bias_table[index[:n, :n].reshape(-1)].view(n, n, h)
    logits = (q * (c // h) ** -0.5) @ k.transpose(-2, -1) + bias.permute(2, 0, 1) + mask
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
    return attn.proj(out)


def reference_block(block, x, full_window):
    b, d, h, w, c = x.shape
    window = tuple(g if g <= k else k for g, k in zip((d, h, w), full_window))
    shift = tuple(0 if g <= k else s for g, k, s in zip((d, h, w), full_window, block.shift))
    y = block.norm1(x)
    pads = [(-g) % k for g, k in zip((d, h, w), window)]
    y = F.pad(y, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    grid = y.shape[1:4]
    y = torch.roll(y, [-s for s in shift], dims=(1, 2, 3))
    labels = region_labels(grid, window, shift)
    index = reference_index(full_window)
    out = torch.zeros_like(y)
    for d0, h0, w0 in itertools.product(*(range(0, g, k) for g, k in zip(grid, window))):
        sl = (slice(d0, d0 + window[0]), slice(h0, h0 + window[1]), slice(w0, w0 + window[2]))
        tokens = y[:, sl[0], sl[1], sl[2]].reshape(b, -1, c)
        lab = labels[sl].reshape(-1)
        mask = (lab[:, None] != lab[None, :]).float() * -100.0
        res = reference_attention(block.attn, tokens, mask, index)
        out[:, sl[0], sl[1], sl[2]] = res.view(b, *window, c)
    out = torch.roll(out, list(shift), dims=(1, 2, 3))[:, :d, :h, :w]
    x = x + out
    return x + block.mlp(block.norm2(x))


def reference_backbone(model, clip, window):
    x = model.patch_embed(clip).permute(0, 2, 3, 4, 1)
    for stage in model.layers:
        for block in stage.blocks:
            x = reference_block(block, x, window)
        if stage.downsample is not None:
            x = stage.downsample(x)
    return model.norm(x).permute(0, 4, 1, 2, 3)


@pytest.mark.parametrize(
    ("window", "clip_shape"),
    [
        # grids (3,11,9) then (3,6,5): padding and shifts on every axis
        ((2, 3, 3), (2, 3, 6, 44, 36)),
        # grids (4,10,9) then (4,5,5): windows clamped to fewer than 8·7·7 tokens
        ((8, 7, 7), (1, 3, 8, 40, 36)),
    ],
)
def test_iwa_backbone_matches_reference(window, clip_shape):
    torch.manual_seed(0)
    model = SwinTransformer3D(
        embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=window, topk=(0, 0)
    ).eval()
    with torch.no_grad():  # non-trivial bias table and norms, so that errors show
        for block in (b for stage in model.layers for b in stage.blocks):
            block.attn.relative_position_bias_table.normal_(std=1.0)
            block.norm1.weight.normal_(1.0, 0.3)
    clip = torch.randn(clip_shape)
    with torch.no_grad():
        expected = reference_backbone(model, clip, window)
        got = model(clip)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_clamped_window_uses_top_left_block_of_full_index():
    """A window clamped to N tokens must index the bias table with index[:N, :N] of (8,7,7)."""
    model = SwinTransformer3D(embed_dim=8, depths=(1,), num_heads=(1,), topk=(0,))
    attn = model.layers[0].blocks[0].attn
    full = reference_index((8, 7, 7))
    assert torch.equal(attn.relative_position_index, full)
    with torch.no_grad():
        attn.relative_position_bias_table.copy_(torch.arange(2535.0).unsqueeze(1))
    bias = attn.position_bias(100)
    assert torch.equal(bias[0].long(), full[:100, :100])


def test_state_dict_layout_matches_official_video_swin(reference_keys):
    """With attention="iwa" the backbone's state_dict is the K400 checkpoint's backbone."""
    model = SwinTransformer3D().eval()
    expected = {
        k.removeprefix("backbone."): shape
        for k, shape in reference_keys("video_swin_t_k400_keys.tsv").items()
        if k.startswith("backbone.")
    }
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected


def test_backbone_output_grid_for_any_input_size():
    model = SwinTransformer3D(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2)).eval()
    for t, h, w in [(32, 224, 224), (32, 360, 640), (8, 100, 60)]:
        with torch.no_grad():
            feats = model(torch.randn(1, 3, t, h, w))
        assert feats.shape == (1, 64, -(-t // 2), -(-h // 32), -(-w // 32))


def test_grad_checkpointing_gives_same_gradients():
    torch.manual_seed(1)
    model = SwinTransformer3D(
        embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=(2, 3, 3), drop_path_rate=0.0
    ).train()
    clip = torch.randn(1, 3, 4, 48, 48)
    model(clip).square().mean().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(clip).square().mean().backward()
    for a, p in zip(plain, model.parameters()):
        torch.testing.assert_close(p.grad, a)

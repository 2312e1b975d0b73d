"""DenseClip's CSA mode against SCLIP's own reference path at 224x224, on the same (random) weights.

`sclip_custom_attn` and the forward in the test follow SCLIP's `clip/model.py` (wangf3014/SCLIP: `custom_attn` with
csa=True, and `encode_image` with the last block replaced), written against open_clip's module names, which are
OpenAI CLIP's. SCLIP materialises the N x N maps; ours goes through scaled_dot_product_attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from laser_ns.teachers.dense_clip import DenseClipConfig


def sclip_custom_attn(attn_layer, x):
    """SCLIP's correlative self-attention on [L, B, width] tokens."""
    num_heads = attn_layer.num_heads
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    scale = head_dim**-0.5
    q, k, v = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
    q = q.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    weights = F.softmax(torch.bmm(q, q.transpose(1, 2)) * scale, -1) + F.softmax(
        torch.bmm(k, k.transpose(1, 2)) * scale, -1
    )
    out = torch.bmm(weights, v).transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return attn_layer.out_proj(out)


def test_csa_equals_sclip_reference_at_224():
    teacher = DenseClipConfig(pretrained=None, allow_random_weights=True, mode="csa").setup()
    visual = teacher.clip_model.visual
    torch.manual_seed(3)
    image = torch.rand(224, 224, 3)
    with torch.no_grad():
        ours = F.normalize(teacher.dense_features(image).float(), dim=-1)  # [14, 14, D]

        x = teacher.normalize_pixels(image)
        x = visual.conv1(x).reshape(1, visual.conv1.out_channels, -1).permute(0, 2, 1)  # [1, 196, width]
        x = torch.cat([visual.class_embedding + torch.zeros(1, 1, x.shape[-1]), x], dim=1)
        x = visual.ln_pre(x + visual.positional_embedding)
        batch_first = getattr(visual.transformer, "batch_first", True)
        x = x if batch_first else x.permute(1, 0, 2)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        x = x.permute(1, 0, 2) if batch_first else x  # [L, 1, width], SCLIP's layout
        last = visual.transformer.resblocks[-1]
        x = x + sclip_custom_attn(last.attn, last.ln_1(x))
        x = x + last.mlp(last.ln_2(x))
        reference = (visual.ln_post(x.permute(1, 0, 2)) @ visual.proj)[0, 1:]  # class token dropped
        reference = F.normalize(reference, dim=-1).reshape(14, 14, -1)
    assert (ours - reference).abs().max() < 4e-6

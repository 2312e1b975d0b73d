"""DenseClip on randomly initialised ViT-B-16 weights (no download): shapes, the dense forward, weights handling."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from laser_ns.teachers.base import tile_grid_size
from laser_ns.teachers.cache import FeatureCache
from laser_ns.teachers.dense_clip import CLIP_MEAN, CLIP_STD, DenseClipConfig, interpolate_positional_embedding

open_clip = pytest.importorskip("open_clip")


def _random_config(**overrides) -> DenseClipConfig:
    return DenseClipConfig(pretrained=None, allow_random_weights=True, **overrides)


@pytest.fixture(scope="module")
def csa_teacher():
    teacher = _random_config(mode="csa").setup()
    assert teacher.clip_model is not None  # built once for the whole module
    return teacher


@pytest.fixture(scope="module")
def maskclip_teacher():
    return _random_config(mode="maskclip").setup()


@pytest.fixture(scope="module")
def image_96x160() -> torch.Tensor:
    return torch.rand(96, 160, 3, generator=torch.Generator().manual_seed(0))


def _reference_normalise(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN)[:, None, None]
    std = torch.tensor(CLIP_STD)[:, None, None]
    return ((image.permute(2, 0, 1) - mean) / std)[None]


def test_construction_is_lazy_and_does_not_import_open_clip():
    code = (
        "import sys\n"
        "from laser_ns.teachers.dense_clip import DenseClipConfig\n"
        "teacher = DenseClipConfig().setup()\n"
        "assert not teacher.is_built\n"
        "assert 'open_clip' not in sys.modules, 'open_clip imported at construction'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_dense_output_shape_and_unit_norm_non_square(csa_teacher, image_96x160):
    features = csa_teacher.dense_features(image_96x160)
    assert features.shape == (6, 10, 512)
    assert csa_teacher.grid_size(96, 160) == (6, 10)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(6, 10))


def test_non_multiple_input_is_resized_to_nearest_multiple(csa_teacher):
    image = torch.rand(40, 70, 3)  # 2.5 -> 3 tiles, 4.375 -> 4 tiles
    assert tile_grid_size(40, 70) == (3, 4)
    assert csa_teacher.dense_features(image).shape == (3, 4, 512)
    assert tile_grid_size(5, 5) == (1, 1)


def test_uint8_image_matches_float_image(csa_teacher):
    image = torch.randint(0, 256, (32, 48, 3), dtype=torch.uint8)
    torch.testing.assert_close(
        csa_teacher.dense_features(image), csa_teacher.dense_features(image.float() / 255), atol=1e-5, rtol=0
    )


def test_csa_and_maskclip_differ(csa_teacher, maskclip_teacher, image_96x160):
    # Same seed -> same random weights, so any difference comes from the last block.
    assert maskclip_teacher.identity()["random_seed"] == csa_teacher.identity()["random_seed"]
    csa = csa_teacher.dense_features(image_96x160)
    maskclip = maskclip_teacher.dense_features(image_96x160)
    torch.testing.assert_close(maskclip.norm(dim=-1), torch.ones(6, 10))
    assert (csa - maskclip).abs().max() > 1e-2
    assert csa_teacher.identity() != maskclip_teacher.identity()


def test_positional_embedding_interpolation_is_identity_at_224(csa_teacher):
    visual = csa_teacher.clip_model.visual
    pos = visual.positional_embedding
    torch.testing.assert_close(interpolate_positional_embedding(pos, (14, 14), (14, 14)), pos, atol=1e-6, rtol=0)


def test_positional_embedding_interpolation_keeps_row_column_order():
    # Patch part = row index on channel 0, column index on channel 1; the class token is a marker.
    rows, cols = torch.meshgrid(torch.arange(14.0), torch.arange(14.0), indexing="ij")
    patch = torch.stack([rows, cols], dim=-1).reshape(196, 2)
    pos = torch.cat([torch.tensor([[-7.0, -7.0]]), patch])
    out = interpolate_positional_embedding(pos, (14, 14), (6, 10))
    assert out.shape == (61, 2)
    torch.testing.assert_close(out[0], torch.tensor([-7.0, -7.0]))
    grid = out[1:].reshape(6, 10, 2)
    assert torch.all(grid[1:, :, 0] > grid[:-1, :, 0])  # row channel grows down the rows
    torch.testing.assert_close(grid[:, 1:, 0], grid[:, :-1, 0])  # ...and is constant along a row
    assert torch.all(grid[:, 1:, 1] > grid[:, :-1, 1])


def test_dense_path_uses_open_clips_weights_and_normalisation(csa_teacher):
    # At 224x224 the unmodified last block on our tokens must give exactly open_clip's encode_image.
    image = torch.rand(224, 224, 3, generator=torch.Generator().manual_seed(1))
    model = csa_teacher.clip_model
    visual = model.visual
    pixels = csa_teacher.normalize_pixels(image)
    torch.testing.assert_close(pixels, _reference_normalise(image))
    with torch.no_grad():
        tokens = csa_teacher.tokens_before_last_block(pixels)
        assert tokens.shape == (1, 197, 768)
        block = visual.transformer.resblocks[-1]
        pooled = visual.ln_post(block(tokens)[:, 0]) @ visual.proj
        reference = model.encode_image(_reference_normalise(image))
    torch.testing.assert_close(pooled, reference, atol=1e-4, rtol=1e-4)


def test_manual_qkv_split_matches_multihead_attention(csa_teacher, image_96x160):
    # "standard" runs our q/k/v slicing and head split with ordinary attention: it must equal open_clip's block.
    with torch.no_grad():
        tokens = csa_teacher.tokens_before_last_block(csa_teacher.normalize_pixels(image_96x160))
        block = csa_teacher.clip_model.visual.transformer.resblocks[-1]
        torch.testing.assert_close(csa_teacher.last_block(tokens, "standard"), block(tokens), atol=1e-4, rtol=1e-4)


def _vectorised_dense(teacher, image: torch.Tensor, mode: str) -> torch.Tensor:
    """Independent all-heads-at-once version of docs/method.md#dense-clip-teacher's last block + head."""
    visual = teacher.clip_model.visual
    block = visual.transformer.resblocks[-1]
    attn = block.attn
    with torch.no_grad():
        x = teacher.tokens_before_last_block(_reference_normalise(image))
        batch, tokens, width = x.shape
        heads = attn.num_heads
        q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).split(width, dim=-1)
        if mode == "maskclip":
            mixed = v
        else:
            q, k, v = (t.reshape(batch, tokens, heads, -1).transpose(1, 2) for t in (q, k, v))
            scale = (width // heads) ** -0.5
            weights = torch.softmax(q @ q.transpose(-1, -2) * scale, -1) + torch.softmax(
                k @ k.transpose(-1, -2) * scale, -1
            )
            mixed = (weights @ v).transpose(1, 2).reshape(batch, tokens, width)
        y = x + attn.out_proj(mixed)
        y = y + block.mlp(block.ln_2(y))
        out = visual.ln_post(y[0, 1:]) @ visual.proj
    h, w = image.shape[0] // 16, image.shape[1] // 16
    return F.normalize(out, dim=-1).reshape(h, w, -1)


def test_csa_matches_vectorised_reference(csa_teacher, image_96x160):
    torch.testing.assert_close(
        csa_teacher.dense_features(image_96x160), _vectorised_dense(csa_teacher, image_96x160, "csa"), atol=1e-4, rtol=0
    )


def test_maskclip_matches_vectorised_reference(maskclip_teacher, image_96x160):
    torch.testing.assert_close(
        maskclip_teacher.dense_features(image_96x160),
        _vectorised_dense(maskclip_teacher, image_96x160, "maskclip"),
        atol=1e-4,
        rtol=0,
    )


def test_encode_text_shape_norm_and_prompts_differ(csa_teacher):
    text = csa_teacher.encode_text(["a chair", "the sky", "a chair"])
    assert text.shape == (3, 512)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(3))
    assert (text[0] - text[1]).abs().max() > 1e-3
    torch.testing.assert_close(text[0], text[2])
    assert csa_teacher.encode_text([]).shape == (0, 512)
    with pytest.raises(TypeError, match="single string"):
        csa_teacher.encode_text("chair")


def test_encode_text_augmented_doubles_each_prompt(csa_teacher):
    augmented = csa_teacher.encode_text_augmented(["chair", "sky"])
    torch.testing.assert_close(augmented, csa_teacher.encode_text(["chair chair", "sky sky"]))
    assert (augmented - csa_teacher.encode_text(["chair", "sky"])).abs().max() > 1e-3


def test_weights_are_frozen_and_outside_the_owner_state_dict(csa_teacher):
    class Owner(nn.Module):
        def __init__(self, teacher):
            super().__init__()
            self.teacher = teacher
            self.head = nn.Linear(2, 2)

    owner = Owner(csa_teacher)
    assert set(owner.state_dict().keys()) == {"head.weight", "head.bias"}
    assert sum(p.numel() for p in owner.parameters()) == 6
    clip = csa_teacher.clip_model
    assert all(not p.requires_grad for p in clip.parameters())
    owner.train()
    assert not clip.training


def test_to_moves_the_hidden_model(csa_teacher):
    class Owner(nn.Module):
        def __init__(self, teacher):
            super().__init__()
            self.teacher = teacher

    owner = Owner(csa_teacher)
    try:
        owner.to(torch.float64)  # the only conversion testable without an accelerator; same _apply path as devices
        assert csa_teacher.clip_model.visual.proj.dtype == torch.float64
    finally:
        owner.to(torch.float32)
    assert csa_teacher.clip_model.visual.proj.dtype == torch.float32


def test_random_weights_are_seeded(csa_teacher, maskclip_teacher):
    # Two separately built teachers with the same seed hold the same random network.
    torch.testing.assert_close(maskclip_teacher.encode_text(["chair"]), csa_teacher.encode_text(["chair"]))
    torch.testing.assert_close(
        maskclip_teacher.clip_model.visual.proj, csa_teacher.clip_model.visual.proj, atol=0, rtol=0
    )


def test_failed_download_gives_one_clear_error(monkeypatch, tmp_path):
    # The Hub answers (so the download is attempted) but open_clip's download fails.
    from laser_ns.teachers import dense_clip

    def offline(*args, **kwargs):
        raise FileNotFoundError("Failed to download file (open_clip_pytorch_model.bin)")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", offline)
    monkeypatch.setattr(dense_clip, "_cached_hf_file", lambda repo_id, names: None)
    monkeypatch.setattr(dense_clip, "_hub_unreachable_reason", lambda repo_id, filename: None)
    # allow_random_weights must not turn a failed download into a silent random model.
    teacher = DenseClipConfig(pretrained="openai", allow_random_weights=True).setup()
    with pytest.raises(RuntimeError) as info:
        teacher.dense_features(torch.rand(32, 32, 3))
    message = str(info.value)
    assert "could not be obtained" in message
    assert "--pipeline.teacher.checkpoint" in message
    assert "~/.cache/huggingface" in message
    assert "hf_hub_download('timm/vit_base_patch16_clip_224.openai', 'open_clip_pytorch_model.bin')" in message
    assert "label-map teacher" in message and "--pipeline.teacher-type labels" in message
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert not teacher.is_built


def test_no_weights_without_allow_random_weights():
    teacher = DenseClipConfig(pretrained=None).setup()
    with pytest.raises(ValueError, match="no weights"):
        teacher.encode_text(["chair"])


def test_unknown_pretrained_tag_is_named():
    with pytest.raises(ValueError, match="no-such-tag"):
        DenseClipConfig(pretrained="no-such-tag").setup().encode_text(["chair"])


def test_missing_checkpoint_file_is_named(tmp_path):
    missing = tmp_path / "nope" / "clip.bin"
    teacher = DenseClipConfig(checkpoint=missing).setup()
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        teacher.dense_features(torch.rand(32, 32, 3))
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        teacher.identity()


def test_unloadable_checkpoint_file_is_named(tmp_path):
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"not a checkpoint")
    teacher = DenseClipConfig(checkpoint=broken).setup()
    with pytest.raises(RuntimeError, match=re.escape(str(broken))):
        teacher.encode_text(["chair"])


def test_identity_tracks_checkpoint_contents(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"version one")
    teacher = DenseClipConfig(checkpoint=path).setup()
    first = teacher.identity()
    assert first["checkpoint_sha256"] is not None and first["pretrained"] is None
    path.write_bytes(b"version two, longer")
    assert teacher.identity()["checkpoint_sha256"] != first["checkpoint_sha256"]
    assert DenseClipConfig(mode="maskclip").setup().identity()["mode"] == "maskclip"
    assert DenseClipConfig().setup().identity()["quick_gelu"] is True  # OpenAI weights were trained with QuickGELU


def test_feature_cache_round_trip_with_dense_clip(csa_teacher, tmp_path: Path):
    image = torch.rand(32, 48, 3)
    cache = FeatureCache.for_teacher(tmp_path, csa_teacher)
    (stored,) = cache.features_for_images(csa_teacher, [image])
    assert stored.dtype == torch.float16 and stored.shape == (2, 3, 512)
    torch.testing.assert_close(stored.float(), csa_teacher.dense_features(image), atol=2e-3, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_and_matches_cpu(csa_teacher, image_96x160):
    cpu = csa_teacher.dense_features(image_96x160)
    cpu_text = csa_teacher.encode_text(["chair"])
    try:
        csa_teacher.to(torch.device("cuda"))
        gpu = csa_teacher.dense_features(image_96x160)  # the CPU image is moved by the teacher
        gpu_text = csa_teacher.encode_text(["chair"])
        assert gpu.device.type == "cuda" and gpu_text.device.type == "cuda"
        # cuDNN convolutions may use TF32: allow a little slack.
        torch.testing.assert_close(gpu.cpu(), cpu, atol=5e-3, rtol=0)
        torch.testing.assert_close(gpu_text.cpu(), cpu_text, atol=5e-3, rtol=0)
    finally:
        csa_teacher.to(torch.device("cpu"))


def _naive_attention(attn: nn.Module, y: torch.Tensor, mode: str) -> torch.Tensor:
    """The textbook formulas, one head at a time, with explicit N x N softmax maps."""
    batch, tokens, width = y.shape
    heads = attn.num_heads
    scale = (width // heads) ** -0.5
    q, k, v = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).split(width, dim=-1)
    out = []
    for h in range(heads):
        cols = slice(h * width // heads, (h + 1) * width // heads)
        qh, kh, vh = q[..., cols], k[..., cols], v[..., cols]
        if mode == "csa":
            weights = torch.softmax(qh @ qh.transpose(-1, -2) * scale, -1) + torch.softmax(
                kh @ kh.transpose(-1, -2) * scale, -1
            )
        else:
            weights = torch.softmax(qh @ kh.transpose(-1, -2) * scale, -1)
        out.append(weights @ vh)
    return attn.out_proj(torch.cat(out, dim=-1))


@pytest.mark.parametrize("mode", ["csa", "standard"])
def test_fused_attention_equals_naive_formula_non_square(csa_teacher, mode):
    # 80x144 pixels: a 5x9 grid, neither square nor 14x14, plus the class token (N = 46).
    from laser_ns.teachers.dense_clip import block_attention

    image = torch.rand(80, 144, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        tokens = csa_teacher.tokens_before_last_block(csa_teacher.normalize_pixels(image))
        assert tokens.shape == (1, 46, 768)
        block = csa_teacher.clip_model.visual.transformer.resblocks[-1]
        y = block.ln_1(tokens)
        torch.testing.assert_close(
            block_attention(block.attn, y, mode), _naive_attention(block.attn, y, mode), atol=2e-5, rtol=1e-5
        )


def test_first_blocks_equal_open_clips_own_blocks_non_square(csa_teacher):
    # The first 11 blocks run through SDPA instead of open_clip's nn.MultiheadAttention; the tokens must agree.
    image = torch.rand(80, 144, 3, generator=torch.Generator().manual_seed(4))
    visual = csa_teacher.clip_model.visual
    with torch.no_grad():
        ours = csa_teacher.tokens_before_last_block(csa_teacher.normalize_pixels(image))
        x = visual.conv1(csa_teacher.normalize_pixels(image)).flatten(2).transpose(1, 2)
        x = torch.cat([visual.class_embedding.expand(1, 1, -1), x], dim=1)
        x = visual.ln_pre(x + interpolate_positional_embedding(visual.positional_embedding, (14, 14), (5, 9)))
        assert visual.transformer.batch_first
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)


_OFFLINE_SCRIPT = """
import time
import huggingface_hub, open_clip  # imported first: the test times the teacher, not Python's imports
from laser_ns.teachers.dense_clip import DenseClipConfig
teacher = DenseClipConfig().setup()
start = time.monotonic()
try:
    teacher.encode_text(["chair"])
finally:
    print(f"SECONDS {time.monotonic() - start:.3f}", flush=True)
"""


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "unreachable endpoint"])
def test_uncached_weights_fail_fast_with_every_way_forward(tmp_path, offline):
    # An empty Hugging Face cache, and either offline mode or a Hub address that refuses connections at once: the
    # result must not depend on whether this machine has a network or cached weights.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    env.update(HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    if offline == "HF_HUB_OFFLINE":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing listens there
    result = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], capture_output=True, text=True, env=env)
    assert result.returncode != 0
    seconds = float(re.search(r"SECONDS ([0-9.]+)", result.stdout).group(1))
    assert seconds < 10, f"took {seconds:.1f} s to give up"
    stderr = result.stderr
    assert stderr.count("Traceback") == 1, stderr  # our error alone: no chained or logged download failures
    assert "Retrying" not in stderr and "thrown while requesting" not in stderr, stderr
    message = " ".join(stderr.split())
    assert "ClipWeightsUnavailable: The CLIP weights ViT-B-16/openai could not be obtained" in message
    assert str(tmp_path / "hf" / "hub") in message  # the cache that was searched
    assert "--pipeline.teacher.checkpoint /path/to/open_clip_pytorch_model.bin" in message
    assert "hf_hub_download('timm/vit_base_patch16_clip_224.openai', 'open_clip_pytorch_model.bin')" in message
    assert "--pipeline.teacher-type labels" in message


def test_cached_weights_are_loaded_without_the_network(monkeypatch, tmp_path):
    # A file in the cache is loaded directly: no request is made, even when the Hub is unreachable.
    from laser_ns.teachers import dense_clip

    cached = tmp_path / "open_clip_model.safetensors"
    cached.write_bytes(b"")
    loaded = {}

    def create(model_name, pretrained=None, **kwargs):
        loaded["pretrained"] = pretrained
        raise RuntimeError("stop after recording what would be loaded")

    def no_network(*args, **kwargs):
        raise AssertionError("the Hub was contacted although the weights are cached")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", create)
    monkeypatch.setattr(dense_clip, "_cached_hf_file", lambda repo_id, names: str(cached))
    monkeypatch.setattr(dense_clip, "_hub_unreachable_reason", no_network)
    with pytest.raises(RuntimeError, match="stop after recording"):
        DenseClipConfig().setup().encode_text(["chair"])
    assert loaded["pretrained"] == str(cached)


def test_feature_dim_comes_from_the_architecture_without_building():
    # ViT-L-16 embeds in 768 dimensions; reading that must not build (or download) anything.
    large = DenseClipConfig(model_name="ViT-L-16").setup()
    assert large.feature_dim == 768
    assert not large.is_built
    with pytest.raises(ValueError, match="no model named 'ViT-Q-16'"):
        _ = DenseClipConfig(model_name="ViT-Q-16").setup().feature_dim


def test_feature_dim_matches_a_built_non_512_model():
    small = _random_config(model_name="ViT-S-16").setup()
    assert small.feature_dim == 384 and not small.is_built
    assert small.encode_text(["chair"]).shape == (1, 384)
    assert small.dense_features(torch.rand(32, 48, 3)).shape == (2, 3, 384)
    assert small.is_built and small.feature_dim == 384

"""Dense CLIP teacher: one CLIP feature per 16x16 tile from a ViT whose last block is modified
(docs/method.md#dense-clip-teacher).

The open_clip model is built on first use, not at construction, and ``open_clip`` is imported only then: importing
the plugin (which every ``ns-train`` run does) must stay fast and must not touch the network.

The CLIP model is kept OUT of the registered module tree: it lives in a plain attribute set with
``object.__setattr__``. That keeps its ~150M frozen weights out of ``state_dict()`` (so out of every nerfstudio
checkpoint), out of ``parameters()`` (so no optimizer or param group can pick them up) and away from
``train()`` (so it stays in eval mode). ``_apply`` is extended so ``.to(device)`` / ``.cuda()`` on the owning
model still move it.
"""

import hashlib
import inspect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from laser_ns.errors import UserError
from laser_ns.teachers.base import (
    DenseTeacher,
    DenseTeacherConfig,
    as_float_image,
    resize_image_to_tiles,
    tile_grid_size,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""Per-channel mean of CLIP's input normalisation."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""Per-channel std of CLIP's input normalisation."""

_FEATURE_FORMAT = 1
"""Bumped whenever the dense forward changes in a way that changes features (invalidates feature caches)."""

_OPENAI_HF_REPO = "timm/vit_base_patch16_clip_224.openai"
"""Where open_clip fetches ViT-B-16 'openai' weights from (named in the offline help)."""

_HUB_PROBE_TIMEOUT_S = 5.0
"""How long to wait for the Hugging Face Hub before calling the machine offline."""

logger = logging.getLogger(__name__)


class ClipWeightsUnavailable(UserError, RuntimeError):
    """The pretrained CLIP weights are neither cached nor downloadable; the message names every way forward."""


def _hf_source(pretrained_cfg: dict[str, Any]) -> tuple[str, list[str]] | None:
    """Hugging Face repo and candidate file names (safetensors first, as open_clip tries them) of a pretrained tag."""
    hub = pretrained_cfg.get("hf_hub", "")
    if not hub:
        return None
    repo_id, filename = os.path.split(hub)
    filename = filename or "open_clip_pytorch_model.bin"
    names = [filename]
    if filename == "open_clip_pytorch_model.bin":
        names.insert(0, "open_clip_model.safetensors")
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return repo_id, names


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _cached_hf_file(repo_id: str, names: Sequence[str]) -> str | None:
    """Path of the first of ``names`` already in the local Hugging Face cache; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    for name in names:
        path = try_to_load_from_cache(repo_id, name)
        if isinstance(path, str) and Path(path).is_file():
            return path
    return None


def _hub_unreachable_reason(repo_id: str, filename: str) -> str | None:
    """Why the Hub cannot serve ``filename`` (offline mode, no network), or None when it answered.

    One request without retries and with a short timeout: huggingface_hub's own download retries a dead network for
    about a minute, which is what this check spares the user.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    try:
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:  # huggingface_hub < 0.23
        from huggingface_hub.utils import HfHubHTTPError

    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "HF_HUB_OFFLINE is set"
    kwargs: dict[str, Any] = {"timeout": _HUB_PROBE_TIMEOUT_S}
    if "retry_on_errors" in inspect.signature(get_hf_file_metadata).parameters:
        kwargs["retry_on_errors"] = False
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename), **kwargs)
    except HfHubHTTPError:
        return None  # the Hub answered (e.g. 404): the download itself will say what is wrong
    except Exception as error:  # no DNS, refused, timed out, offline mode...
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no details'}"
    return None


def _weights_help(model_name: str, tag: str, repo_id: str, filename: str) -> str:
    """Every way to give DenseClip its weights, for the offline error."""
    return (
        "Ways forward: (1) a local weights file: --pipeline.teacher.checkpoint /path/to/" + filename + " (download "
        f"it from https://huggingface.co/{repo_id}/resolve/main/{filename}); (2) fill the cache on a machine with "
        'internet: python -c "from huggingface_hub import hf_hub_download; '
        f"print(hf_hub_download('{repo_id}', '{filename}'))\" and copy the printed file's models--"
        f"{repo_id.replace('/', '--')} folder into this machine's cache ({_hf_cache_dir()}; default "
        "~/.cache/huggingface/hub, moved by HF_HOME or HF_HUB_CACHE); (3) on a scene with labels/, lift its label "
        "maps instead of CLIP, with the simulated dense CLIP teacher (--pipeline.teacher-type clip-like, as "
        "laser-demo does) or the plain label-map teacher (--pipeline.teacher-type labels); neither needs CLIP weights. "
        f"DenseClip never falls back to random weights for {model_name}/{tag}."
    )


@dataclass
class DenseClipConfig(DenseTeacherConfig):
    """Dense CLIP teacher on open_clip."""

    _target: type = field(default_factory=lambda: DenseClip)
    model_name: str = "ViT-B-16"
    """open_clip architecture: a ViT with 16-pixel patches (ViT-B-16 is the reference)."""
    pretrained: str | None = "openai"
    """open_clip pretrained tag; fetched once and cached under ~/.cache/huggingface. None: no pretrained weights."""
    checkpoint: Path | None = None
    """Local weights file (e.g. open_clip_pytorch_model.bin); used instead of downloading the pretrained tag."""
    mode: Literal["csa", "maskclip"] = "csa"
    """Last-block attention: correlative self-attention (SCLIP, default) or MaskCLIP's value-only path."""
    quick_gelu: bool | None = None
    """Use QuickGELU as OpenAI's weights were trained with. None: follow the pretrained tag (True for openai)."""
    allow_random_weights: bool = False
    """Tests only: allow random weights when pretrained and checkpoint are both unset. The features mean nothing."""
    random_seed: int = 0
    """Seed of the random weights (only used with allow_random_weights)."""


def interpolate_positional_embedding(
    positional_embedding: Float[Tensor, "1+N width"],
    source_grid: tuple[int, int],
    target_grid: tuple[int, int],
) -> Float[Tensor, "1+M width"]:
    """Bicubically resize the patch part of a ViT positional embedding to ``target_grid``; keep the class token's.

    At ``target_grid == source_grid`` this is the identity (bicubic sampling at the original pixel centres).
    """
    gh, gw = source_grid
    width = positional_embedding.shape[-1]
    if positional_embedding.shape[0] != 1 + gh * gw:
        raise ValueError(
            f"Positional embedding has {positional_embedding.shape[0]} rows, expected 1 + {gh}x{gw} for the "
            "class token plus the patch grid; only single-class-token ViTs are supported."
        )
    class_pos, patch_pos = positional_embedding[:1], positional_embedding[1:]
    patch_pos = patch_pos.reshape(1, gh, gw, width).permute(0, 3, 1, 2)  # [1, width, gh, gw]
    patch_pos = F.interpolate(patch_pos.float(), size=target_grid, mode="bicubic", align_corners=False)
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(target_grid[0] * target_grid[1], width)  # [M, width]
    return torch.cat([class_pos, patch_pos.to(positional_embedding.dtype)], dim=0)


def block_attention(
    attn: nn.MultiheadAttention, y: Float[Tensor, "B N width"], mode: Literal["csa", "maskclip", "standard"]
) -> Float[Tensor, "B N width"]:
    """Self-attention of ``attn`` on normalised tokens ``y`` (batch-first), with its output projection.

    The packed ``in_proj_weight``/``in_proj_bias`` rows are q, k, v in that order. Modes
    (docs/method.md#dense-clip-teacher):
    "standard" is the block's own ``softmax(q k^T s) v``; "csa" is SCLIP's ``(softmax(q q^T s) + softmax(k k^T s)) v``,
    computed as the sum of two attentions since the product distributes over the sum; "maskclip" keeps only the value
    path. ``s = head_dim ** -0.5``. Every attention goes through ``scaled_dot_product_attention``, whose fused CPU and
    CUDA kernels never hold the N x N weights, so memory grows linearly with the number of tokens N.
    """
    width = y.shape[-1]
    if mode == "maskclip":
        # Value path only: each token keeps its own (projected) value, no mixing between tokens.
        return attn.out_proj(F.linear(y, attn.in_proj_weight[2 * width :], attn.in_proj_bias[2 * width :]))
    batch, tokens = y.shape[0], y.shape[1]
    heads = attn.num_heads
    head_dim = width // heads
    scale = head_dim**-0.5
    qkv = F.linear(y, attn.in_proj_weight, attn.in_proj_bias)  # [B, N, 3*width]
    q, k, v = (
        t.reshape(batch, tokens, heads, head_dim).transpose(1, 2)  # [B, heads, N, head_dim]
        for t in qkv.chunk(3, dim=-1)
    )
    if mode == "csa":
        out = F.scaled_dot_product_attention(q, q, v, scale=scale)
        out += F.scaled_dot_product_attention(k, k, v, scale=scale)
    elif mode == "standard":
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    else:
        raise ValueError(f"Unknown attention mode {mode!r}; choose 'csa', 'maskclip' or 'standard'.")
    return attn.out_proj(out.transpose(1, 2).reshape(batch, tokens, width))  # heads merged back: [B, N, width]


def residual_block(
    block: nn.Module, x: Float[Tensor, "B N width"], mode: Literal["csa", "maskclip", "standard"]
) -> Float[Tensor, "B N width"]:
    """One open_clip ``ResidualAttentionBlock`` on batch-first tokens, its attention computed by
    :func:`block_attention` in ``mode`` ("standard" equals the block's own forward); LayerScales are kept."""
    x = x + block.ls_1(block_attention(block.attn, block.ln_1(x), mode))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


class DenseClip(DenseTeacher):
    """Frozen CLIP ViT in dense mode: features ``[H/16, W/16, 512]`` and text features in the same space."""

    config: DenseClipConfig

    def __init__(self, config: DenseClipConfig, **kwargs: Any) -> None:
        super().__init__()
        if config.mode not in ("csa", "maskclip"):
            raise ValueError(f"Unknown dense CLIP mode {config.mode!r}; choose 'csa' or 'maskclip'.")
        self.config = config
        # Plain attributes, deliberately not registered as submodules (see the module docstring).
        object.__setattr__(self, "_clip", None)
        object.__setattr__(self, "_tokenizer", None)
        self._checkpoint_digest: tuple[tuple[str, int, int], str] | None = None

    # ------------------------------------------------------------------ construction
    def _apply(self, fn, recurse: bool = True):
        # nn.Module.to/cuda/cpu/half all funnel through _apply; the hidden CLIP model must follow the anchor buffer.
        super()._apply(fn, recurse=recurse)
        if self._clip is not None:
            self._clip._apply(fn)
        return self

    @property
    def is_built(self) -> bool:
        """Whether the CLIP model has been created (it is built on first use)."""
        return self._clip is not None

    @property
    def clip_model(self) -> nn.Module:
        """The frozen open_clip model, built on first access."""
        if self._clip is None:
            object.__setattr__(self, "_clip", self._build())
        return self._clip

    @property
    def feature_dim(self) -> int:  # type: ignore[override]
        """Channels of the CLIP embedding space (512 for ViT-B-16, 768 for ViT-L-16).

        Cheap: before the model is built this reads the architecture's JSON config shipped with open_clip (importing
        open_clip, but building nothing and loading no weights); afterwards, the built model's projection size.
        """
        if self._clip is not None:
            return int(self._clip.visual.output_dim)
        import open_clip

        return int(self._model_config(open_clip)["embed_dim"])

    def _model_config(self, open_clip: Any) -> dict[str, Any]:
        model_cfg = open_clip.get_model_config(self.config.model_name)
        if model_cfg is None:
            known = [name for name in open_clip.list_models() if "-16" in name and "SigLIP" not in name]
            raise ValueError(
                f"open_clip has no model named {self.config.model_name!r}. ViTs with 16-pixel patches: {known}"
            )
        return model_cfg

    def _effective_quick_gelu(self) -> bool:
        if self.config.quick_gelu is not None:
            return self.config.quick_gelu
        if self.config.pretrained:
            import open_clip

            return bool(open_clip.get_pretrained_cfg(self.config.model_name, self.config.pretrained).get("quick_gelu"))
        return False

    def _build(self) -> nn.Module:
        import open_clip
        from open_clip.transformer import VisionTransformer

        cfg = self.config
        model_cfg = self._model_config(open_clip)
        patch_size = model_cfg.get("vision_cfg", {}).get("patch_size")
        if patch_size != self.tile_size:
            raise ValueError(
                f"{cfg.model_name} uses {patch_size}-pixel patches; Laser's teacher needs one feature per "
                f"{self.tile_size}-pixel tile. Use a /16 ViT such as ViT-B-16."
            )
        quick_gelu = self._effective_quick_gelu()

        if cfg.checkpoint is not None:
            path = Path(cfg.checkpoint).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"CLIP checkpoint {path} does not exist. Fix --pipeline.teacher.checkpoint, or leave it unset "
                    f"to use open_clip's cached '{cfg.pretrained}' weights."
                )
            try:
                model, _, _ = open_clip.create_model_and_transforms(
                    cfg.model_name, pretrained=str(path), force_quick_gelu=quick_gelu
                )
            except Exception as error:
                raise RuntimeError(
                    f"Could not load CLIP weights for {cfg.model_name} from {path}: {error}. The file must be an "
                    f"open_clip/OpenAI state dict for {cfg.model_name} (e.g. open_clip_pytorch_model.bin or "
                    f"open_clip_model.safetensors from huggingface.co/{_OPENAI_HF_REPO})."
                ) from error
        elif cfg.pretrained:
            pretrained_cfg = open_clip.get_pretrained_cfg(cfg.model_name, cfg.pretrained)
            if not pretrained_cfg:
                tags = open_clip.list_pretrained_tags_by_model(cfg.model_name)
                raise ValueError(
                    f"open_clip has no pretrained tag {cfg.pretrained!r} for {cfg.model_name}; known: {tags}"
                )
            source = _hf_source(pretrained_cfg)
            weights: str = cfg.pretrained  # open_clip resolves (and if needed downloads) the tag itself
            if source is not None:
                repo_id, names = source
                cached = _cached_hf_file(repo_id, names)
                if cached is not None:
                    weights = cached  # load the cached file directly: no request to the Hub at all
                else:
                    reason = _hub_unreachable_reason(repo_id, names[-1])
                    if reason is not None:
                        raise ClipWeightsUnavailable(
                            f"The CLIP weights {cfg.model_name}/{cfg.pretrained} could not be obtained: they are not "
                            f"in the local Hugging Face cache ({_hf_cache_dir()}) and huggingface.co cannot be "
                            f"reached ({reason}). " + _weights_help(cfg.model_name, cfg.pretrained, repo_id, names[-1])
                        )
                    logger.info(
                        "Downloading the CLIP weights %s/%s once from %s.", cfg.model_name, cfg.pretrained, repo_id
                    )
            try:
                model, _, _ = open_clip.create_model_and_transforms(
                    cfg.model_name, pretrained=weights, force_quick_gelu=quick_gelu
                )
            except Exception as error:
                repo_id, names = source or (_OPENAI_HF_REPO, ["open_clip_pytorch_model.bin"])
                raise ClipWeightsUnavailable(
                    f"The CLIP weights {cfg.model_name}/{cfg.pretrained} could not be obtained ({error}). "
                    + _weights_help(cfg.model_name, cfg.pretrained, repo_id, names[-1])
                ) from error
        elif cfg.allow_random_weights:
            # Seeded so that repeated runs (and the feature cache key) describe the same random network.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.random_seed)
                model, _, _ = open_clip.create_model_and_transforms(
                    cfg.model_name, pretrained=None, force_quick_gelu=quick_gelu
                )
        else:
            raise ValueError(
                "DenseClip has no weights to use: pretrained and checkpoint are both unset. Set "
                "--pipeline.teacher.pretrained openai or --pipeline.teacher.checkpoint /path/to/weights "
                "(allow_random_weights exists for tests only)."
            )

        visual = model.visual
        if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
            raise ValueError(
                f"{cfg.model_name} is not a plain open_clip VisionTransformer (timm tower or attentional pooling); "
                "the dense forward needs one. Use ViT-B-16."
            )
        for block in visual.transformer.resblocks:
            attn = getattr(block, "attn", None)
            packed = isinstance(attn, nn.MultiheadAttention) and attn.in_proj_weight is not None
            if (
                not packed
                or hasattr(block, "ln_1_kv")
                or not all(hasattr(block, name) for name in ("ln_1", "ls_1", "ln_2", "mlp", "ls_2"))
            ):
                raise ValueError(
                    f"{cfg.model_name}'s transformer blocks are not plain open_clip self-attention blocks with a "
                    "packed q/k/v projection; the dense forward needs them. Use ViT-B-16."
                )
        model = model.to(self.device).eval()
        model.requires_grad_(False)
        return model

    # ------------------------------------------------------------------ identity
    def _checkpoint_sha256(self) -> str | None:
        if self.config.checkpoint is None:
            return None
        path = Path(self.config.checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"CLIP checkpoint {path} does not exist. Fix --pipeline.teacher.checkpoint.")
        stat = path.stat()
        # Hash once per file version: a 600 MB checkpoint takes about a second to hash.
        stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if self._checkpoint_digest is None or self._checkpoint_digest[0] != stamp:
            self._checkpoint_digest = (stamp, _file_sha256(path))
        return self._checkpoint_digest[1]

    def identity(self) -> dict[str, Any]:
        """Everything that changes the features: architecture, weights (tag or file hash), mode, activation."""
        cfg = self.config
        random_weights = cfg.checkpoint is None and not cfg.pretrained
        return {
            "teacher": "dense_clip",
            "format": _FEATURE_FORMAT,
            "model_name": cfg.model_name,
            "pretrained": None if cfg.checkpoint is not None else cfg.pretrained,
            "checkpoint_sha256": self._checkpoint_sha256(),
            "quick_gelu": self._effective_quick_gelu(),
            "mode": cfg.mode,
            "random_seed": cfg.random_seed if random_weights else None,
            "tile_size": self.tile_size,
            "resize": "bilinear-antialias-to-nearest-multiple",
        }

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Float[Tensor, "C D"]:
        """L2-normalised CLIP text embedding of each prompt (open_clip's bundled tokenizer), on the teacher's device."""
        if isinstance(prompts, str):
            raise TypeError(f"Expected a sequence of prompts, got the single string {prompts!r}; wrap it in a list.")
        model = self.clip_model
        if len(prompts) == 0:
            return torch.zeros(0, self.feature_dim, device=self.device)
        if self._tokenizer is None:
            import open_clip

            object.__setattr__(self, "_tokenizer", open_clip.get_tokenizer(self.config.model_name))
        tokens = self._tokenizer(list(prompts)).to(self.device)
        return F.normalize(model.encode_text(tokens).float(), dim=-1)

    # ------------------------------------------------------------------ image
    def normalize_pixels(self, image: Float[Tensor, "H W 3"]) -> Float[Tensor, "1 3 h*16 w*16"]:
        """Resize ``image`` (values in [0, 1]) to whole tiles and apply CLIP's mean/std normalisation."""
        pixels = resize_image_to_tiles(as_float_image(image).to(self.device), self.tile_size)  # [3, H', W']
        mean = torch.tensor(CLIP_MEAN, device=pixels.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=pixels.device)[:, None, None]
        return ((pixels - mean) / std)[None]

    def tokens_before_last_block(self, pixels: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B 1+h*w width"]:
        """Embed normalised pixels and run every transformer block but the last, unchanged (batch-first output).

        The blocks run through :func:`residual_block` rather than open_clip's ``nn.MultiheadAttention``, which
        materialises every head's N x N attention weights (12 x 47k x 47k floats for a 4032x3024 image); the result
        is the same up to float rounding.
        """
        visual = self.clip_model.visual
        x = visual.conv1(pixels.to(visual.conv1.weight.dtype))  # [B, width, h, w]
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # [B, h*w, width]
        class_token = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([class_token, x], dim=1)  # [B, 1+h*w, width]
        x = x + interpolate_positional_embedding(visual.positional_embedding, visual.grid_size, grid).to(x.dtype)
        # patch_dropout is skipped on purpose: every tile needs its token (it is an identity in eval mode anyway).
        x = visual.ln_pre(x)
        for block in visual.transformer.resblocks[:-1]:
            x = residual_block(block, x, "standard")
        return x

    def last_block(
        self, x: Float[Tensor, "B N width"], mode: Literal["csa", "maskclip", "standard"]
    ) -> Float[Tensor, "B N width"]:
        """The last transformer block with its attention replaced ("standard" = unmodified, for checks).

        Works on batch-first tokens whatever open_clip's layout, using the block's own weights (see
        :func:`residual_block`).
        """
        if mode not in ("csa", "maskclip", "standard"):
            raise ValueError(f"Unknown last-block mode {mode!r}; choose 'csa', 'maskclip' or 'standard'.")
        return residual_block(self.clip_model.visual.transformer.resblocks[-1], x, mode)

    @torch.no_grad()
    def dense_features(
        self, image: Float[Tensor, "H W 3"], labels: Int[Tensor, "H W"] | None = None
    ) -> Float[Tensor, "h w D"]:
        """Dense CLIP features of ``image`` (values in [0, 1]); ``labels`` is ignored.

        The image is resized to the nearest multiple of 16 per side, so ``h, w = self.grid_size(H, W)``.
        """
        h, w = tile_grid_size(image.shape[0], image.shape[1], self.tile_size)
        visual = self.clip_model.visual
        x = self.tokens_before_last_block(self.normalize_pixels(image))
        x = self.last_block(x, self.config.mode)
        patches = visual.ln_post(x[:, 1:]) @ visual.proj  # [1, h*w, D]; class token dropped
        return F.normalize(patches[0].float().reshape(h, w, -1), dim=-1)

"""Cost benchmark: laser vs nerfacto training steps, dense teacher vs a LERF-style crop pyramid, render time.

    python benchmarks/cost.py --output benchmarks/cost.json

Everything runs side by side in one process tree, so ratios hold on a noisy machine: this process generates one
scene, then starts one worker subprocess per measurement, interleaved laser / nerfacto / laser / nerfacto, and
finally one teacher worker. Every worker uses the same number of torch CPU threads (``--threads``).

1. Training cost: laser-lite and a nerfacto with laser-lite's radiance field (same hash grids, MLPs, samples per ray,
   proposal networks, optimisers and learning rates), both on the pure-torch implementation, at the same RGB rays
   per batch and image resolution, on the same scene, through the same dataparser. Laser's teacher is the
   CLIP-like simulation at 4-pixel tiles with 32-pixel language patches by default (``--teacher``, ``--tile-size``,
   ``--language-patch-size``: 2 patches of 8x8 tiles, 128 language rays per step at 160x120). Laser's run is split
   into its geometry phase (nerfacto's work plus Laser's bookkeeping) and its language phase (the same RGB rays plus the
   language rays of the teacher patches). Step times are wall-clock per training iteration (callbacks, forward,
   backward, optimiser); the first ``--warmup-steps`` of each phase are dropped. Peak memory is the peak resident set
   size of the worker during training (its high-water mark is reset after setup), and the resident size after setup.
2. Teacher preprocessing per image, on the same generated images with the same open_clip ViT-B-16 (random weights:
   no weights can be downloaded here, and weights do not change the cost): our dense pass (``DenseClip``, one
   forward per image, features cached as fp16 ``[H/16, W/16, 512]``) vs a LERF-style pyramid (7 crop sizes from 0.05
   to 0.5 of the image height, stride half the crop, zero padding of half a crop, every crop resized to 224 and
   encoded with ``encode_image``; LERF stores one fp16 feature per crop plus a duplicated last row and column).
   Cropping and resizing every crop is measured in full. Encoding is measured on ``--pyramid-crops-per-scale`` crops
   of each scale and multiplied by that scale's crop count (0 encodes every crop: hours on a CPU); the JSON says
   which.
3. Evaluation render time per frame: each training worker renders the scene's annotated views after training.

nerfacto cannot be built offline as is: ``NerfactoModel`` builds torchmetrics' LPIPS, whose AlexNet weights are
downloaded at construction. The nerfacto worker (only) replaces that class by a stub before building the model.
LPIPS is an evaluation metric only, never used in a training step or a render, so it changes no measured number.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import tyro
from quality import machine_info, seed_everything

LERF_SCALES = 7
"""Crop sizes of LERF's pyramid."""
LERF_SCALE_RANGE = (0.05, 0.5)
"""Smallest and largest crop side, as a fraction of the image height."""
LERF_STRIDE_RATIO = 0.5
"""Stride between crops, as a fraction of the crop side."""
CLIP_INPUT = 224
"""Side every crop is resized to before encoding."""


# ----------------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------------


def _proc_status_kib(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {key}; the memory numbers need Linux.")
    return int(match.group(1))


def reset_peak_rss() -> bool:
    """Resets this process's peak RSS (VmHWM) so the next peak belongs to what runs next; False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def lerf_crop_grid(height: int, width: int, scale: float) -> dict[str, int]:
    """Crop side, stride, padding and crop rows/columns of one LERF pyramid level on a ``height x width`` image."""
    kernel = int(height * scale)
    stride = int(kernel * LERF_STRIDE_RATIO)
    if kernel < 1 or stride < 1:
        raise ValueError(f"A {height}x{width} image is too small for a LERF crop of {scale} of its height.")
    padding = kernel // 2
    rows = (height + 2 * padding - kernel) // stride + 1
    cols = (width + 2 * padding - kernel) // stride + 1
    return {"kernel": kernel, "stride": stride, "padding": padding, "rows": rows, "cols": cols}


def lerf_scales() -> list[float]:
    """The 7 crop sizes, evenly spaced from 0.05 to 0.5 of the image height."""
    low, high = LERF_SCALE_RANGE
    return [low + (high - low) * i / (LERF_SCALES - 1) for i in range(LERF_SCALES)]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if match is None:
        raise SystemExit(f"Image size {text!r} must look like 128x96 (width x height).")
    return int(match.group(1)), int(match.group(2))


class _NoLPIPS(torch.nn.Module):
    """Stand-in for torchmetrics' LPIPS (its AlexNet weights download at construction); only scores NaN."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.tensor(math.nan)


# ----------------------------------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class CostBenchmark:
    """Training step time and memory (laser vs nerfacto), teacher preprocessing (dense vs pyramid), render time."""

    output: Path = Path("benchmarks/cost.json")
    """JSON file with every measurement, the settings and the machine."""
    workdir: Path = Path("/tmp/laser_cost")
    """Scenes, runs and caches go here."""
    preset: str = "tabletop"
    """Generated scene for the training workers."""
    num_views: int = 24
    """Views of the training scene."""
    width: int = 160
    """Training image width."""
    height: int = 120
    """Training image height."""
    teacher: Literal["clip-like", "label-map"] = "clip-like"
    """Laser's teacher: 'clip-like' (simulated dense CLIP, laser_ns/teachers/clip_like.py) or 'label-map' (class
    embeddings of the label maps with hashed text, the earlier benchmark's)."""
    tile_size: int = 4
    """Teacher tile in pixels (4 at 160x120: a 40x30 grid, as benchmarks/quality.py; 16 at 128x96: the old regime)."""
    language_patch_size: int = 32
    """Side of laser's language patches in pixels (32 = 8x8 tiles of 4 pixels: 128 language rays per step with
    laser-lite's 2 patches; 128 with 16-pixel tiles was the old regime)."""
    label_volume_render: Literal["per_ray", "per_sample"] = "per_ray"
    """Laser's label volume rendering (LabelVolumeConfig.render): 'per_sample' is the paper's form."""
    rays_per_batch: int = 256
    """RGB rays per training step, for both methods (laser adds its language rays to these)."""
    geometry_steps: int = 150
    """Steps of laser's geometry phase; nerfacto trains geometry_steps + language_steps steps."""
    language_steps: int = 150
    """Steps of laser's language phase."""
    warmup_steps: int = 10
    """Steps dropped from the timing at the start of each phase."""
    repeats: int = 2
    """Laser / nerfacto worker pairs, run alternately (A B A B ...)."""
    render_frames: int = 2
    """Annotated views each training worker renders after training, for the render time."""
    teacher_sizes: list[str] = field(default_factory=lambda: ["128x96", "512x384"])
    """Image sizes (width x height) for the teacher comparison."""
    teacher_images: int = 2
    """Images per size for the teacher comparison."""
    pyramid_crops_per_scale: int = 4
    """Crops per pyramid scale whose encoding is timed (projected to all crops); 0 encodes every crop."""
    threads: int = 1
    """torch CPU threads in every worker."""
    parts: list[Literal["training", "teacher"]] = field(default_factory=lambda: ["training", "teacher"])
    """Which measurements to run (training also gives the render times)."""
    seed: int = 0
    """Scene and training seed."""
    worker: Literal["", "laser", "nerfacto", "teacher"] = ""
    """Internal: run one measurement in this process (set by the parent)."""
    result_file: Path | None = None
    """Internal: where a worker writes its JSON."""

    # ------------------------------------------------------------------ parent
    def main(self) -> None:
        if self.worker:
            self.run_worker()
            return
        from laser_ns.scenes import make_scene

        machine_before = machine_info()
        start = time.perf_counter()
        make_scene(
            self.scene_dir, self.preset, seed=self.seed, num_views=self.num_views, width=self.width, height=self.height
        )
        report: dict[str, Any] = {
            "command": shlex.join(["python", *sys.argv]),
            "settings": {k: str(v) for k, v in vars(self).items() if k not in ("worker", "result_file")},
            "machine_at_start": machine_before,
        }
        if "training" in self.parts:
            train_runs: dict[str, list[dict[str, Any]]] = {"laser": [], "nerfacto": []}
            for repeat in range(self.repeats):
                for method in ("laser", "nerfacto"):
                    train_runs[method].append(self.spawn(method, f"{method}_{repeat}"))
            report["training"] = summarise_training(train_runs)
            report["training_runs"] = train_runs
        if "teacher" in self.parts:
            report["teacher"] = self.spawn("teacher", "teacher")
        report["machine_at_end"] = machine_info()
        report["wall_seconds"] = time.perf_counter() - start
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text(json.dumps(report, indent=2))
        print()
        print(markdown_tables(report))
        print(f"\nwrote {self.output} ({report['wall_seconds']:.0f} s)")

    @property
    def scene_dir(self) -> Path:
        return self.workdir / "scene"

    def spawn(self, worker: str, tag: str) -> dict[str, Any]:
        """Runs one worker subprocess with the same settings and returns its JSON."""
        result_file = self.workdir / "results" / f"{tag}.json"
        result_file.parent.mkdir(parents=True, exist_ok=True)
        result_file.unlink(missing_ok=True)
        args = [sys.executable, str(Path(__file__).resolve())]
        for f in dataclasses.fields(self):
            if f.name in ("worker", "result_file", "output"):
                continue
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            args += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
        args += ["--worker", worker, "--result-file", str(result_file)]
        # One thread per OpenMP/MKL pool too, so no library grabs both cores behind torch's back.
        threads = str(self.threads)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        print(f"[cost] {tag} ...", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not result_file.exists():
            raise RuntimeError(
                f"Worker {tag} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
            )
        result = json.loads(result_file.read_text())
        print(f"[cost] {tag} done in {time.perf_counter() - start:.0f} s: {_worker_summary(result)}", flush=True)
        return result

    # ------------------------------------------------------------------ workers
    def run_worker(self) -> None:
        torch.set_num_threads(self.threads)
        if self.worker in ("laser", "nerfacto"):
            result = self.train_worker(self.worker)
        else:
            result = self.teacher_worker()
        result["torch_threads"] = torch.get_num_threads()
        assert self.result_file is not None, "--result-file is set by the parent"
        self.result_file.write_text(json.dumps(result, indent=2))

    def trainer_config(self, method: str):
        """laser-lite, or nerfacto with laser-lite's radiance field, for geometry_steps + language_steps steps."""
        from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
        from nerfstudio.models.nerfacto import NerfactoModelConfig
        from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

        from laser_ns.data.dataparser import LaserDataParserConfig
        from laser_ns.method_configs import laser_lite_config

        total = self.geometry_steps + self.language_steps
        config = laser_lite_config()
        config.max_num_iterations = total
        config.vis = "tensorboard"
        config.output_dir = self.workdir / "runs"
        config.experiment_name = method
        config.timestamp = "cost"
        config.steps_per_eval_image = config.steps_per_eval_all_images = config.steps_per_eval_batch = 10**9
        config.steps_per_save = 10**9
        laser_pipeline = config.pipeline
        laser_pipeline.datamanager.data = self.scene_dir
        laser_pipeline.datamanager.train_num_rays_per_batch = self.rays_per_batch
        laser_pipeline.datamanager.language_patch_size = self.language_patch_size
        laser_pipeline.datamanager.language_patch_tiles = None
        laser_pipeline.model.label_volume.render = self.label_volume_render
        if self.teacher == "clip-like":
            laser_pipeline.teacher_type = "clip-like"
            laser_pipeline.clip_like_teacher.tile_size = self.tile_size
            laser_pipeline.clip_like_teacher.seed = self.seed
        else:
            laser_pipeline.teacher_type = "labels"
            laser_pipeline.label_teacher.text_encoder = "hashed"
            laser_pipeline.label_teacher.tile_size = self.tile_size
        laser_pipeline.model.schedule.language_start_fraction = self.geometry_steps / total
        if method == "laser":
            return config

        # nerfacto with exactly laser-lite's radiance-field settings (LaserModelConfig extends NerfactoModelConfig).
        shared = {
            f.name: copy.deepcopy(getattr(laser_pipeline.model, f.name))
            for f in dataclasses.fields(NerfactoModelConfig)
            if f.init and f.name != "_target"
        }
        datamanager = VanillaDataManagerConfig(
            data=self.scene_dir,
            dataparser=LaserDataParserConfig(),
            train_num_rays_per_batch=self.rays_per_batch,
            eval_num_rays_per_batch=laser_pipeline.datamanager.eval_num_rays_per_batch,
        )
        config.method_name = "nerfacto"
        config.pipeline = VanillaPipelineConfig(datamanager=datamanager, model=NerfactoModelConfig(**shared))
        config.optimizers = {k: v for k, v in config.optimizers.items() if k in ("proposal_networks", "fields")}
        return config

    def train_worker(self, method: str) -> dict[str, Any]:
        from nerfstudio.engine.callbacks import TrainingCallbackLocation

        if method == "nerfacto":
            import torchmetrics.image.lpip as lpip_module

            lpip_module.LearnedPerceptualImagePatchSimilarity = _NoLPIPS  # see the module docstring

        seed_everything(self.seed)
        config = self.trainer_config(method)
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        pipeline = trainer.pipeline
        rss_after_setup = _proc_status_kib("VmRSS")
        peak_reset = reset_peak_rss()

        # The body of nerfstudio's Trainer.train, without its logging, eval and checkpoint branches (all disabled).
        step_seconds: list[float] = []
        for step in range(config.max_num_iterations):
            start = time.perf_counter()
            pipeline.train()
            for callback in trainer.callbacks:
                callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
            trainer.train_iteration(step)
            for callback in trainer.callbacks:
                callback.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
            step_seconds.append(time.perf_counter() - start)
        peak_training = _proc_status_kib("VmHWM")

        # Render time per frame on the eval (annotated) views.
        model = pipeline.model
        model.eval()
        cameras = pipeline.datamanager.eval_dataset.cameras
        reset_peak_rss()
        render_seconds = []
        with torch.no_grad():
            for i in range(min(self.render_frames, len(cameras))):
                start = time.perf_counter()
                model.get_outputs_for_camera(cameras[i : i + 1].to(model.device))
                render_seconds.append(time.perf_counter() - start)
        peak_render = _proc_status_kib("VmHWM")

        g, w = self.geometry_steps, self.warmup_steps
        result: dict[str, Any] = {
            "method": method,
            "step_seconds": step_seconds,
            "median_step_ms_all": 1000 * _median(step_seconds[w:]),
            "mean_step_ms_all": 1000 * sum(step_seconds) / len(step_seconds),
            "rss_after_setup_mib": rss_after_setup / 1024,
            "peak_rss_training_mib": peak_training / 1024,
            "peak_rss_render_mib": peak_render / 1024,
            "peak_rss_was_reset": peak_reset,
            "render_seconds": render_seconds,
            "render_resolution": [int(cameras.width[0, 0]), int(cameras.height[0, 0])],
            "rgb_rays_per_step": self.rays_per_batch,
        }
        if method == "laser":
            datamanager = config.pipeline.datamanager
            tiles = max(1, datamanager.language_patch_size // pipeline.datamanager.teacher.tile_size)
            grid = pipeline.datamanager.tile_features[0].shape[:2]
            result["median_step_ms_geometry"] = 1000 * _median(step_seconds[w:g])
            result["median_step_ms_language"] = 1000 * _median(step_seconds[g + w :])
            # Crops are clipped to the image's tile grid; all tiles of the generated scenes are labelled.
            result["language_rays_per_step"] = (
                datamanager.language_patches_per_step * min(tiles, grid[0]) * min(tiles, grid[1])
            )
        return result

    def teacher_worker(self) -> dict[str, Any]:
        from laser_ns.scenes import make_scene
        from laser_ns.teachers.cache import FeatureCache, image_key
        from laser_ns.teachers.dense_clip import DenseClipConfig

        teacher = DenseClipConfig(pretrained=None, allow_random_weights=True).setup()
        clip = teacher.clip_model
        results: dict[str, Any] = {
            "clip": "open_clip ViT-B-16, random weights (same network for both; weights do not change the cost)",
            "pyramid_encoding": "all crops"
            if self.pyramid_crops_per_scale == 0
            else f"{self.pyramid_crops_per_scale} crops per scale timed, times the scale's crop count",
            "sizes": {},
        }
        # Warm-up outside the timings: first calls allocate and pick kernels.
        with torch.no_grad():
            teacher.dense_features(torch.rand(64, 64, 3))
            clip.encode_image(torch.rand(1, 3, CLIP_INPUT, CLIP_INPUT))
        for size in self.teacher_sizes:
            width, height = _parse_size(size)
            info = make_scene(
                self.workdir / f"teacher_{size}", self.preset, seed=self.seed, num_views=self.teacher_images,
                width=width, height=height, write_labels=False,
            )  # fmt: skip
            cache = FeatureCache(self.workdir / f"teacher_{size}" / "laser_cache", teacher.identity())
            per_image = []
            for path in info.image_paths:
                image = _load_image(path)
                # Interleaved per image, so both see the same machine load.
                dense = time_dense(teacher, image)
                cache.features_for_images(teacher, [image], [None], desc="cache")
                dense["cache_file_bytes"] = cache.path_for(image_key(image)).stat().st_size
                pyramid = time_pyramid(clip, image, self.pyramid_crops_per_scale)
                per_image.append({"dense": dense, "pyramid": pyramid})
            results["sizes"][size] = {
                "images": len(per_image),
                "dense_seconds": _median([r["dense"]["seconds"] for r in per_image]),
                "dense_fp16_bytes": per_image[0]["dense"]["fp16_bytes"],
                "dense_cache_file_bytes": per_image[0]["dense"]["cache_file_bytes"],
                "dense_grid": per_image[0]["dense"]["grid"],
                "pyramid_seconds": _median([r["pyramid"]["seconds"] for r in per_image]),
                "pyramid_crop_resize_seconds": _median([r["pyramid"]["crop_resize_seconds"] for r in per_image]),
                "pyramid_encode_seconds": _median([r["pyramid"]["encode_seconds"] for r in per_image]),
                "pyramid_seconds_per_crop": _median([r["pyramid"]["seconds_per_crop"] for r in per_image]),
                "pyramid_crops": per_image[0]["pyramid"]["crops"],
                "pyramid_fp16_bytes": per_image[0]["pyramid"]["fp16_bytes"],
                "pyramid_levels": per_image[0]["pyramid"]["levels"],
                "per_image": per_image,
            }
        return results


def _load_image(path: Path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)


@torch.no_grad()
def time_dense(teacher, image: torch.Tensor) -> dict[str, Any]:
    """One dense forward over the whole image (what our cache stores per image)."""
    start = time.perf_counter()
    features = teacher.dense_features(image)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "grid": list(features.shape), "fp16_bytes": features.numel() * 2}


@torch.no_grad()
def time_pyramid(clip, image: torch.Tensor, crops_per_scale: int, chunk: int = 128) -> dict[str, Any]:
    """A LERF-style 7-scale crop pyramid of ``image`` with ``clip.encode_image`` (see the module docstring)."""
    import torch.nn.functional as F

    from laser_ns.teachers.dense_clip import CLIP_MEAN, CLIP_STD

    height, width = image.shape[:2]
    pixels = image.permute(2, 0, 1)[None]  # [1, 3, H, W]
    mean = torch.tensor(CLIP_MEAN)[None, :, None, None]
    std = torch.tensor(CLIP_STD)[None, :, None, None]
    dim = int(clip.visual.output_dim)
    crop_resize = encode = 0.0
    levels, total_crops, stored = [], 0, 0
    for scale in lerf_scales():
        grid = lerf_crop_grid(height, width, scale)
        k = grid["kernel"]
        count = grid["rows"] * grid["cols"]
        # Cropping and resizing every crop is timed in full, in chunks so memory stays bounded.
        start = time.perf_counter()
        unfolded = F.unfold(pixels, kernel_size=k, stride=grid["stride"], padding=grid["padding"])  # [1, 3*k*k, N]
        crops = unfolded[0].T.reshape(-1, 3, k, k)  # [N, 3, k, k]
        if crops.shape[0] != count:
            raise RuntimeError(f"Pyramid level {scale}: {crops.shape[0]} crops, expected {count}.")
        sample_ids = (
            list(range(count))
            if crops_per_scale == 0
            else sorted({round(i * (count - 1) / max(1, crops_per_scale - 1)) for i in range(crops_per_scale)})
        )
        sample = []
        for first in range(0, count, chunk):
            resized = F.interpolate(crops[first : first + chunk], size=(CLIP_INPUT, CLIP_INPUT), mode="bicubic")
            resized = (resized - mean) / std
            sample += [resized[i - first] for i in sample_ids if first <= i < first + chunk]
        crop_resize += time.perf_counter() - start
        # Encoding: the timed crops, in batches of `chunk`.
        start = time.perf_counter()
        for first in range(0, len(sample), chunk):
            clip.encode_image(torch.stack(sample[first : first + chunk]))
        seconds = time.perf_counter() - start
        per_crop = seconds / len(sample)
        encode += per_crop * count
        total_crops += count
        stored += (grid["rows"] + 1) * (grid["cols"] + 1)  # LERF duplicates the last row and column
        levels.append(
            {"scale": round(scale, 4), **grid, "crops": count, "timed_crops": len(sample), "s_per_crop": per_crop}
        )
    return {
        "seconds": crop_resize + encode,
        "crop_resize_seconds": crop_resize,
        "encode_seconds": encode,
        "seconds_per_crop": encode / total_crops,
        "crops": total_crops,
        "fp16_bytes": stored * dim * 2,
        "levels": levels,
    }


# ----------------------------------------------------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------------------------------------------------


def _worker_summary(result: dict[str, Any]) -> str:
    if "median_step_ms_all" in result:
        parts = [f"median step {result['median_step_ms_all']:.0f} ms"]
        if "median_step_ms_language" in result:
            parts.append(
                f"geometry {result['median_step_ms_geometry']:.0f} ms, "
                f"language {result['median_step_ms_language']:.0f} ms"
            )
        parts.append(f"peak RSS {result['peak_rss_training_mib']:.0f} MiB")
        return ", ".join(parts)
    return ", ".join(
        f"{k}: dense {v['dense_seconds']:.2f} s, pyramid {v['pyramid_seconds']:.0f} s"
        for k, v in result["sizes"].items()
    )


def summarise_training(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the repeats, and laser/nerfacto ratios per A/B pair (the pair shares the machine's state)."""
    laser, nerfacto = runs["laser"], runs["nerfacto"]
    pairs = list(zip(laser, nerfacto, strict=True))
    language = [a["median_step_ms_language"] / b["median_step_ms_all"] for a, b in pairs]
    geometry = [a["median_step_ms_geometry"] / b["median_step_ms_all"] for a, b in pairs]
    whole = [a["mean_step_ms_all"] / b["mean_step_ms_all"] for a, b in pairs]
    return {
        "laser_geometry_step_ms": _median([r["median_step_ms_geometry"] for r in laser]),
        "laser_language_step_ms": _median([r["median_step_ms_language"] for r in laser]),
        "laser_mean_step_ms": _median([r["mean_step_ms_all"] for r in laser]),
        "nerfacto_step_ms": _median([r["median_step_ms_all"] for r in nerfacto]),
        "nerfacto_mean_step_ms": _median([r["mean_step_ms_all"] for r in nerfacto]),
        "ratio_language_step_per_pair": language,
        "ratio_geometry_step_per_pair": geometry,
        "ratio_mean_step_per_pair": whole,
        "ratio_language_step": _median(language),
        "ratio_geometry_step": _median(geometry),
        "ratio_mean_step": _median(whole),
        "laser_peak_rss_training_mib": max(r["peak_rss_training_mib"] for r in laser),
        "nerfacto_peak_rss_training_mib": max(r["peak_rss_training_mib"] for r in nerfacto),
        "laser_rss_growth_training_mib": _median(
            [r["peak_rss_training_mib"] - r["rss_after_setup_mib"] for r in laser]
        ),
        "nerfacto_rss_growth_training_mib": _median(
            [r["peak_rss_training_mib"] - r["rss_after_setup_mib"] for r in nerfacto]
        ),
        "laser_rss_after_setup_mib": _median([r["rss_after_setup_mib"] for r in laser]),
        "nerfacto_rss_after_setup_mib": _median([r["rss_after_setup_mib"] for r in nerfacto]),
        "laser_render_seconds_per_frame": _median([s for r in laser for s in r["render_seconds"]]),
        "nerfacto_render_seconds_per_frame": _median([s for r in nerfacto for s in r["render_seconds"]]),
        "laser_peak_rss_render_mib": max(r["peak_rss_render_mib"] for r in laser),
        "nerfacto_peak_rss_render_mib": max(r["peak_rss_render_mib"] for r in nerfacto),
        "render_resolution": laser[0]["render_resolution"],
        "rgb_rays_per_step": laser[0]["rgb_rays_per_step"],
        "language_rays_per_step": laser[0]["language_rays_per_step"],
    }


def _mib(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:.2f} MiB" if num_bytes >= 2**20 else f"{num_bytes / 1024:.1f} KiB"


def markdown_tables(report: dict[str, Any]) -> str:
    """The training table and render line, and the teacher table, for the parts the report holds."""
    lines = _training_lines(report["training"]) if "training" in report else []
    if "teacher" in report:
        lines += (["", ""] if lines else []) + _teacher_lines(report["teacher"])
    return "\n".join(lines)


def _training_lines(t: dict[str, Any]) -> list[str]:
    steps_per_s = {k: 1000 / t[k] for k in ("laser_geometry_step_ms", "laser_language_step_ms", "nerfacto_step_ms")}
    w, h = t["render_resolution"]
    lines = [
        f"Training at {w}x{h}, {t['rgb_rays_per_step']} RGB rays per step (laser adds {t['language_rays_per_step']} "
        "language rays per language step); medians over the repeats:",
        "",
        "| | step ms | steps/s | ratio to nerfacto (per A/B pair) | peak RSS training | RSS after setup "
        "| growth in training |",
        "|---|---|---|---|---|---|---|",
        f"| nerfacto | {t['nerfacto_step_ms']:.0f} | {steps_per_s['nerfacto_step_ms']:.2f} | 1 "
        f"| {t['nerfacto_peak_rss_training_mib']:.0f} MiB | {t['nerfacto_rss_after_setup_mib']:.0f} MiB "
        f"| {t['nerfacto_rss_growth_training_mib']:.0f} MiB |",
        f"| laser, geometry phase | {t['laser_geometry_step_ms']:.0f} | {steps_per_s['laser_geometry_step_ms']:.2f} "
        f"| {t['ratio_geometry_step']:.2f} ({', '.join(f'{r:.2f}' for r in t['ratio_geometry_step_per_pair'])}) "
        f"| {t['laser_peak_rss_training_mib']:.0f} MiB | {t['laser_rss_after_setup_mib']:.0f} MiB "
        f"| {t['laser_rss_growth_training_mib']:.0f} MiB |",
        f"| laser, language phase | {t['laser_language_step_ms']:.0f} | {steps_per_s['laser_language_step_ms']:.2f} "
        f"| {t['ratio_language_step']:.2f} ({', '.join(f'{r:.2f}' for r in t['ratio_language_step_per_pair'])}) "
        "| (same run) | | |",
        f"| laser, whole run (mean) | {t['laser_mean_step_ms']:.0f} | {1000 / t['laser_mean_step_ms']:.2f} "
        f"| {t['ratio_mean_step']:.2f} vs nerfacto's mean "
        f"({', '.join(f'{r:.2f}' for r in t['ratio_mean_step_per_pair'])}) "
        "| | | |",
        "",
        f"Target (laser step at most 1.5x a nerfacto step, language phase): "
        f"{'met' if t['ratio_language_step'] <= 1.5 else 'not met'} ({t['ratio_language_step']:.2f}x).",
        "",
        f"Evaluation render per {w}x{h} frame: laser {t['laser_render_seconds_per_frame']:.2f} s "
        f"(peak RSS {t['laser_peak_rss_render_mib']:.0f} MiB), nerfacto {t['nerfacto_render_seconds_per_frame']:.2f} s "
        f"(peak RSS {t['nerfacto_peak_rss_render_mib']:.0f} MiB).",
    ]
    return lines


def _teacher_lines(teacher: dict[str, Any]) -> list[str]:
    lines = [
        f"Teacher preprocessing per image ({teacher['clip']}; pyramid encoding: {teacher['pyramid_encoding']}):",
        "",
        "| image | dense s | dense fp16 bytes (cache file) | pyramid crops | pyramid s (crop+resize / encode) "
        "| pyramid fp16 bytes | time ratio | bytes ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, s in teacher["sizes"].items():
        lines.append(
            f"| {size} | {s['dense_seconds']:.2f} "
            f"| {_mib(s['dense_fp16_bytes'])} ({_mib(s['dense_cache_file_bytes'])}) "
            f"| {s['pyramid_crops']} | {s['pyramid_seconds']:.0f} ({s['pyramid_crop_resize_seconds']:.1f} / "
            f"{s['pyramid_encode_seconds']:.0f}) | {_mib(s['pyramid_fp16_bytes'])} "
            f"| {s['pyramid_seconds'] / s['dense_seconds']:.0f}x "
            f"| {s['pyramid_fp16_bytes'] / s['dense_fp16_bytes']:.1f}x |"
        )
    return lines


if __name__ == "__main__":
    tyro.cli(CostBenchmark).main()

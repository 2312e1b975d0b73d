"""The ``laser``, ``laser-paper`` and ``laser-lite`` methods registered with nerfstudio.

Importing this module must stay cheap and safe: ``ns-train`` imports every plugin's entry point, so nothing
here loads CLIP, tiny-cuda-nn or CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from laser_ns.data.datamanager import LaserDataManagerConfig
from laser_ns.data.dataparser import LaserDataParserConfig
from laser_ns.fields.language_field import HashGridConfig, LabelVolumeConfig, LanguageFieldConfig
from laser_ns.model_config import (
    MEASURED_DEFAULTS,
    PAPER_PARTS,
    LaserModelConfig,
    set_model_options,
)
from laser_ns.pipeline import LaserPipelineConfig
from laser_ns.schedule import PhaseDecaySchedulerConfig, PhaseName
from laser_ns.trainer_config import LaserTrainerConfig


@dataclass
class AdamBetasOptimizerConfig(AdamOptimizerConfig):
    """Adam with configurable betas (the reference uses (0.9, 0.99))."""

    betas: tuple[float, float] = (0.9, 0.99)
    """Adam's running-average coefficients."""


def _optimizers(grid_lr: float = 0.02, network_lr: float = 1e-4) -> dict[str, dict]:
    """Adam, each group decaying over the phase it trains in (docs/training.md#training-phases;
    laser_ns/schedule.py)."""

    def adam(lr: float, phase: PhaseName, final_fraction: float = 0.1) -> dict:
        return {
            "optimizer": AdamBetasOptimizerConfig(lr=lr, eps=1e-15),
            "scheduler": PhaseDecaySchedulerConfig(phase=phase, lr_final_fraction=final_fraction),
        }

    return {
        "proposal_networks": adam(1e-2, "geometry", 0.01),
        "fields": adam(1e-2, "geometry", 0.01),
        "appearance": adam(1e-2, "colour", 0.01),
        "language_grids": adam(grid_lr, "language"),
        "language_networks": adam(network_lr, "language"),
        "camera_opt": adam(1e-3, "geometry"),
    }


def _set_model_options(config: TrainerConfig, options: dict[str, object]) -> None:
    set_model_options(config.pipeline.model, options)


def laser_config() -> TrainerConfig:
    """Nerfacto's full-size hash grids with the paper's schedule and the measured-best model options (GPU)."""
    steps = 30000
    config = LaserTrainerConfig(
        method_name="laser",
        steps_per_eval_batch=500,
        steps_per_eval_image=2000,
        steps_per_eval_all_images=steps,
        steps_per_save=2000,
        max_num_iterations=steps,
        mixed_precision=False,
        pipeline=LaserPipelineConfig(
            datamanager=LaserDataManagerConfig(
                dataparser=LaserDataParserConfig(),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
                language_patch_size=256,
                language_patches_per_step=8,
            ),
            model=LaserModelConfig(
                eval_num_rays_per_chunk=1 << 12,
                average_init_density=0.01,
                camera_optimizer=CameraOptimizerConfig(mode="off"),
            ),
        ),
        optimizers=_optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 12),
        vis="viewer",
    )
    _set_model_options(config, MEASURED_DEFAULTS)
    return config


def laser_paper_config() -> TrainerConfig:
    """``laser`` with the paper's exact model: every part on, raw features (the 3D-OVS presets start from it)."""
    config = laser_config()
    config.method_name = "laser-paper"
    _set_model_options(config, PAPER_PARTS)
    config.pipeline.datamanager.language_targets = "tile"  # the reference's targets: each tile's own feature
    return config


def laser_lite_config() -> TrainerConfig:
    """Small grids and few samples: trains a 128x128 scene on a laptop CPU in minutes."""
    steps = 2000
    small_grid = HashGridConfig(num_levels=8, base_res=16, max_res=256, log2_hashmap_size=15)
    config = laser_config()
    config.method_name = "laser-lite"
    config.max_num_iterations = steps
    config.steps_per_eval_batch = 200
    config.steps_per_eval_image = 1000
    config.steps_per_eval_all_images = steps
    config.steps_per_save = 1000
    config.machine = MachineConfig(device_type="cpu")
    config.optimizers = _optimizers(network_lr=1e-3)  # short runs need a faster language MLP
    config.viewer = ViewerConfig(num_rays_per_chunk=1 << 11)
    datamanager = config.pipeline.datamanager
    datamanager.train_num_rays_per_batch = 256
    datamanager.eval_num_rays_per_batch = 256
    datamanager.language_patch_size = 128
    # 8x8 tiles whatever the teacher: 128 pixels of dense CLIP's 16-pixel tiles, 32 of the CLIP-like teacher's 4
    datamanager.language_patch_tiles = 8
    datamanager.teacher_image_scale = 1.0  # small generated scenes: the teacher sees the images as they are
    datamanager.language_patches_per_step = 2
    model = config.pipeline.model
    model.eval_num_rays_per_chunk = 1 << 11
    model.implementation = "torch"
    model.num_levels = 8
    model.log2_hashmap_size = 15
    model.max_res = 512
    model.hidden_dim = 32
    model.hidden_dim_color = 32
    model.appearance_embed_dim = 8
    model.num_nerf_samples_per_ray = 24
    model.num_proposal_samples_per_ray = (48, 24)
    model.proposal_net_args_list = [
        {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 5, "max_res": 64, "use_linear": False},
        {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 5, "max_res": 128, "use_linear": False},
    ]
    model.proposal_warmup = 500
    # A quarter of the run for geometry: on a CPU budget, language steps are what limits quality (similar_colors,
    # plain distillation: 750 language steps 51.9 mIoU, 1500 of 2000 steps 70.0; benchmarks/RESULTS.md).
    model.schedule.language_start_fraction = 0.25
    model.language_field = LanguageFieldConfig(grid=small_grid, hidden_dim=64)
    model.label_volume = LabelVolumeConfig(grid=small_grid)
    return config


def nerfacto_lite_config(steps: int = 1000) -> TrainerConfig:
    """nerfacto with laser-lite's field, proposal networks and camera settings, on the laser-data dataparser, without
    the LPIPS download: a geometry run for ``ns-train laser-lite --pipeline.model.geometry-checkpoint``, offline on
    a CPU (the nerfacto route of ``laser``, at laser-lite's size)."""
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
    from nerfstudio.models.nerfacto import NerfactoModelConfig
    from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

    from laser_ns.fields.radiance_field import OfflineNerfactoModelConfig

    lite = laser_lite_config()
    lite_model = lite.pipeline.model
    shared = {
        f.name: getattr(lite_model, f.name) for f in fields(NerfactoModelConfig) if f.init and f.name != "_target"
    }
    lite_data = lite.pipeline.datamanager

    def adam(lr: float) -> dict:
        return {
            "optimizer": AdamBetasOptimizerConfig(lr=lr, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr / 100, max_steps=steps),
        }

    return LaserTrainerConfig(
        method_name="nerfacto-lite",
        steps_per_eval_batch=200,
        steps_per_eval_image=steps,
        steps_per_eval_all_images=steps,
        steps_per_save=steps,
        max_num_iterations=steps,
        mixed_precision=False,
        machine=MachineConfig(device_type="cpu"),
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=LaserDataParserConfig(),
                train_num_rays_per_batch=lite_data.train_num_rays_per_batch,
                eval_num_rays_per_batch=lite_data.eval_num_rays_per_batch,
            ),
            model=OfflineNerfactoModelConfig(**shared),
        ),
        optimizers={"proposal_networks": adam(1e-2), "fields": adam(1e-2), "camera_opt": adam(1e-3)},
        viewer=ViewerConfig(num_rays_per_chunk=1 << 11),
        vis="viewer",
    )


laser_method = MethodSpecification(
    config=laser_config(),
    description="Laser (T-PAMI 2025): dense-CLIP language field, paper schedule, measured-best parts (GPU).",
)

laser_paper_method = MethodSpecification(
    config=laser_paper_config(),
    description="Laser exactly as the paper trains it: adapter, self-cross, transient attention, label volume, text "
    "augmentation, raw dense-CLIP features (GPU).",
)

laser_lite_method = MethodSpecification(
    config=laser_lite_config(),
    description="Laser with small grids and few samples: trains a small scene on a CPU in minutes.",
)

nerfacto_lite_method = MethodSpecification(
    config=nerfacto_lite_config(),
    description="nerfacto at laser-lite's size on the laser-data dataparser, offline (no LPIPS download): geometry for "
    "laser-lite --pipeline.model.geometry-checkpoint.",
)

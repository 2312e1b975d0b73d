"""LaserDataManager: nerfacto's RGB rays plus language rays from random teacher patches
(docs/method.md#training-batches).

The teacher's dense features are computed once per training image (cached on disk) instead of once per patch
per step as in the reference; random tile-aligned crops of the cached feature maps keep the patch augmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from laser_ns.compat import LoadsOlderConfigs
from laser_ns.conventions import UNLABELLED
from laser_ns.data.dataparser import LaserDataParserConfig
from laser_ns.data.semantics import image_size, read_label_map, read_mask_values
from laser_ns.teachers.base import valid_tiles


class LaserDataset(InputDataset):
    """An InputDataset that, when asked to, adds the class masks (their 8-bit values) of annotated views."""

    with_segmentation_masks: bool = False

    def get_metadata(self, data: dict) -> dict:
        if not self.with_segmentation_masks:
            return {}
        semantics = self.metadata.get("semantics")
        original_index = self.metadata["image_indices"][data["image_idx"]]
        if semantics is None or original_index not in semantics.annotated_masks:
            return {}
        # The masks' 8-bit values at the dataset's (possibly downscaled) size; the evaluation protocol thresholds them.
        height, width = data["image"].shape[:2]
        values = read_mask_values(semantics.annotated_masks[original_index], semantics.class_names, (width, height))
        return {"segmentation_masks": torch.from_numpy(values).permute(1, 2, 0)}  # [H, W, C] uint8

    def label_map(self, index: int, size: tuple[int, int] | None = None) -> Tensor | None:
        """The training label map of image ``index`` as class indices (-1 unlabelled), at ``size`` (height, width;
        default: the dataset's image size)."""
        semantics = self.metadata.get("semantics")
        if semantics is None or not semantics.label_paths:
            return None
        path = semantics.label_paths[Path(self.image_filenames[index]).stem]
        labels = torch.from_numpy(read_label_map(path, semantics.label_names, semantics.class_names))
        labels[labels < 0] = UNLABELLED  # the teachers' convention
        height, width = size or (int(self.cameras.height[index]), int(self.cameras.width[index]))
        if labels.shape != (height, width):
            labels = F.interpolate(labels[None, None].float(), size=(height, width), mode="nearest")[0, 0].long()
        return labels


def teacher_view(outputs: Any, scale: float) -> LaserDataset:
    """The images of ``outputs`` (a dataparser's) as the teacher sees them: the same files and cameras, resized by
    ``teacher_image_scale`` instead of ``camera_res_scale_factor``. Training and ``laser-eval --score-teacher`` both
    read the teacher's images through it."""
    return LaserDataset(outputs, scale_factor=scale)


@dataclass
class LaserDataManagerConfig(LoadsOlderConfigs, VanillaDataManagerConfig):
    """RGB rays for the radiance field and tile rays with teacher features for the language fields."""

    LEGACY: ClassVar[dict[str, object]] = {"language_ray_jitter": False, "language_targets": "tile"}
    """Runs saved before ``language_ray_jitter`` existed cast each tile's ray through its centre; runs saved before
    ``language_targets`` existed trained on the tile's own feature."""

    _target: type = field(default_factory=lambda: LaserDataManager)
    dataparser: LaserDataParserConfig = field(default_factory=LaserDataParserConfig)
    """Reads 3D-OVS/LLFF and nerfstudio scenes."""
    teacher_image_scale: float = 0.2
    """Scale of the images the teacher sees relative to the capture (the image files, full size); the reference uses 0.2
    (patches cut from 5x-downsampled images). RGB trains at camera_res_scale_factor."""
    language_patch_size: int = 256
    """Side of the square crops in pixels of the teacher's image (a multiple of its tile: 16 pixels for CLIP ViT-B/16);
    one ray per tile."""
    language_patch_tiles: int | None = None
    """Side of the square crops in teacher tiles, whatever the teacher's tile size; overrides language_patch_size when
    set. laser-lite uses 8, so that one setting suits dense CLIP's 16-pixel tiles (128 pixels) and the CLIP-like
    teacher's 4-pixel tiles on small scenes (32 pixels) alike."""
    language_patches_per_step: int = 8
    """Crops per training step (reference: 8; 16 for the table scene)."""
    language_ray_jitter: bool = True
    """Cast each tile's ray through a random point of the tile instead of its centre. The tile feature describes the
    whole tile, and the tile grid is fixed per image, so centre rays would only ever supervise one point per tile:
    jittered rays let the views' overlapping tiles pin class edges down to below a tile."""
    language_targets: Literal["tile", "colour-guided"] = "colour-guided"
    """Target of each language ray. 'colour-guided': a joint-bilateral upsampling of the teacher's tiles at the ray's
    point: the 3x3 tiles around it, weighted by distance and by how close each tile's mean colour is to the colour
    where the ray passes, so a ray on the far side of an object edge takes the feature of the tiles that share its
    colour (measured sharper edges: benchmarks/RESULTS.md). 'tile': the teacher feature of the tile the ray passes
    through, as the reference does (laser-paper)."""
    language_guide_space_sigma: float = 1.0
    """'colour-guided' targets: spatial width of the weights, in tiles."""
    language_guide_colour_sigma: float = 0.1
    """'colour-guided' targets: colour width of the weights, RGB in [0, 1]."""
    language_patch_sampling: Literal["uniform", "balanced"] = "uniform"
    """Where the crops are cut. 'uniform': random images and positions (the reference). 'balanced': the teacher's
    tiles are clustered by their features (k-means, no labels needed) and each crop is centred on a tile of a cluster
    drawn uniformly, so small objects' tiles are seen about as often as the wall's."""
    language_patch_clusters: int = 16
    """Clusters of teacher tiles for 'balanced' sampling (more than the scene's objects: a cluster per object part
    is harmless, two objects in one cluster are sampled by their share)."""
    cache_dir: Path | None = None
    """Where teacher features are cached; default: <data>/laser_cache."""

    def feature_cache_dir(self) -> Path:
        """Where the teacher's features are cached: ``cache_dir``, else the scene's ``laser_cache`` folder."""
        return Path(self.cache_dir or Path(self.dataparser.data) / "laser_cache")


class LaserDataManager(VanillaDataManager[LaserDataset]):
    """Adds teacher-feature patches to nerfacto's pixel batches."""

    config: LaserDataManagerConfig

    def __init__(
        self,
        config: LaserDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: str = "val",
        world_size: int = 1,
        local_rank: int = 0,
        teacher=None,
        **kwargs,
    ) -> None:
        self.__dict__["teacher"] = teacher  # owned by the pipeline; not a submodule, so never saved
        self.tile_features: list[Tensor] = []
        self.tile_clusters: list[Tensor] = []  # per cluster, the [M, 3] (image, row, col) of its tiles
        self.tile_guides: list[Tensor] = []  # 'colour-guided' targets: per image, [h*k, w*k, 3] colours, k=GUIDE_CELLS
        self.teacher_images_computed = 0  # images whose features this process computed (the others were cached)
        super().__init__(
            config, device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank, **kwargs
        )

    def create_eval_dataset(self) -> LaserDataset:
        dataset = super().create_eval_dataset()
        dataset.with_segmentation_masks = True
        return dataset

    def setup_train(self) -> None:
        super().setup_train()
        # only a training run needs teacher targets; eval and rendering load a checkpoint instead
        if self.teacher is not None and self.test_mode == "val":
            guided = self.config.language_targets == "colour-guided"
            if guided:  # refused before the teacher runs
                check_guide_sigmas(self.config.language_guide_space_sigma, self.config.language_guide_colour_sigma)
            elif self.config.language_targets != "tile":
                raise ValueError(
                    f"Unknown --pipeline.datamanager.language-targets {self.config.language_targets!r}; choose 'tile' "
                    "or 'colour-guided'."
                )
            self.tile_features, guides = self._teacher_features(with_guides=guided)
            if guided:
                self.tile_guides = [guides[i].to(tiles.device) for i, tiles in enumerate(self.tile_features)]
            if self.config.language_patch_sampling == "balanced" and self.tile_features:
                self.tile_clusters = cluster_tiles(self.tile_features, self.config.language_patch_clusters)
            elif self.config.language_patch_sampling not in ("uniform", "balanced"):
                raise ValueError(
                    f"Unknown --pipeline.datamanager.language-patch-sampling {self.config.language_patch_sampling!r}; "
                    "choose 'uniform' or 'balanced'."
                )

    # ------------------------------------------------------------------ teacher
    def _teacher_features(self, with_guides: bool = False) -> tuple[list[Tensor], dict[int, Tensor]]:
        """Teacher features of every training image, computed on the capture resized by ``teacher_image_scale``, and
        with ``with_guides`` each image's colour guide (:func:`guide_colours`), taken from the same decoded image.

        The teacher's images are read from the image files and resized exactly as nerfstudio resizes the training
        images (so with ``teacher_image_scale == camera_res_scale_factor`` they are the training images), whatever
        the training resolution: it may be larger or smaller than the teacher's. ``_sample_patches`` maps the tile
        grid onto the training image, which covers the same field of view.
        """
        from laser_ns.teachers.cache import FeatureCache
        from laser_ns.teachers.dense_clip import ClipWeightsUnavailable
        from laser_ns.teachers.features import TeacherFeatures

        scale = self.config.teacher_image_scale
        if not scale > 0:
            raise ValueError(
                f"teacher_image_scale must be positive, got {scale}; it is the size of the teacher's images relative "
                "to the capture (0.2 = 5x smaller, 1.0 = full size). Fix --pipeline.datamanager.teacher-image-scale."
            )
        data = Path(self.config.dataparser.data)
        dataset = self.train_dataset
        # Same image files and cameras, resized by the teacher's scale instead of camera_res_scale_factor.
        teacher_images = teacher_view(self.train_dataparser_outputs, scale)
        has_labels = len(dataset) > 0 and dataset.label_map(0) is not None
        if not has_labels and self.teacher.needs_labels:
            raise ValueError(
                f"The label-map teacher needs {data / 'labels'}/ ("
                "docs/method.md#per-view-label-maps); this scene has none. Add label maps or use the dense CLIP "
                "teacher (--pipeline.teacher-type clip)."
            )
        if self.teacher.needs_labels:
            self.teacher.set_class_names(dataset.metadata["class_names"])
        cache = FeatureCache(self.config.feature_cache_dir(), self.teacher.identity())
        guides: dict[int, Tensor] = {}

        def load(i: int) -> tuple[Tensor, Tensor | None]:
            image = teacher_images.get_image_float32(i)[..., :3]
            labels = teacher_images.label_map(i, size=(image.shape[0], image.shape[1])) if has_labels else None
            if with_guides and i not in guides:  # every image is decoded here, cached or not (its key hashes it)
                guides[i] = guide_colours(image, *self.teacher.grid_size(image.shape[0], image.shape[1]))
            return image, labels

        try:
            computed = TeacherFeatures.compute(self.teacher, len(teacher_images), load, cache)
        except ClipWeightsUnavailable as error:
            if not has_labels:
                raise
            raise ClipWeightsUnavailable(
                f"{error} This scene has label maps ({data / 'labels'}/): it can train right now, offline, with "
                "the simulated dense CLIP teacher (--pipeline.teacher-type clip-like) or the label-map teacher "
                "(--pipeline.teacher-type labels)."
            ) from None
        self.teacher_images_computed = computed.computed  # by this process (the others were read from the cache)
        features, sizes = computed.tiles, computed.sizes
        self._warn_if_grid_smaller_than_a_patch(sizes, features)
        CONSOLE.print(
            f"[laser_ns] teacher features for {len(features)} images: {tuple(features[0].shape)} each, from "
            f"{sizes[0][0]}x{sizes[0][1]} images (teacher_image_scale {scale} of the capture)"
        )
        return [f.to(self.device) for f in features], guides

    def _warn_if_grid_smaller_than_a_patch(self, sizes: list[tuple[int, int]], features: list[Tensor]) -> None:
        """One warning when some image's tile grid is smaller than a language patch: patches then shrink to it."""
        tile = self.teacher.tile_size
        tile_px = self.patch_tiles()
        small = [i for i, f in enumerate(features) if f.shape[0] < tile_px or f.shape[1] < tile_px]
        if not small:
            return
        i = small[0]
        grid_h, grid_w = features[i].shape[:2]
        width, height = sizes[i]
        capture = self.train_dataparser_outputs.image_filenames[i]
        capture_w, capture_h = image_size(capture)
        scale = self.config.teacher_image_scale
        # tile_grid_size rounds each side to the nearest multiple of the tile, so a side needs (tiles - 1/2) tiles
        needed_scale = math.ceil(100 * (tile * tile_px - tile / 2) / min(capture_w, capture_h)) / 100
        CONSOLE.print(
            f"[bold yellow]WARNING: the teacher sees {width}x{height} images (teacher_image_scale {scale} x the "
            f"{capture_w}x{capture_h} capture, e.g. {capture}), a {grid_w}x{grid_h}-tile grid, smaller than one "
            f"{tile * tile_px}-pixel language patch ({tile_px}x{tile_px} tiles), as for {len(small)} "
            f"of the {len(features)} images. Their patches are cut down to the whole image. Raise "
            f"--pipeline.datamanager.teacher-image-scale (to {needed_scale} or more) or lower "
            + (
                f"--pipeline.datamanager.language-patch-tiles (to {min(grid_h, grid_w)} or less)."
                if self.config.language_patch_tiles is not None
                else f"--pipeline.datamanager.language-patch-size (to {tile * min(grid_h, grid_w)} or less)."
            )
        )

    def patch_tiles(self) -> int:
        """Side of a language crop in teacher tiles (``language_patch_tiles``, else ``language_patch_size`` over the
        teacher's tile)."""
        if self.config.language_patch_tiles is not None:
            if self.config.language_patch_tiles < 1:
                raise ValueError(
                    f"--pipeline.datamanager.language-patch-tiles must be 1 or more, got "
                    f"{self.config.language_patch_tiles}."
                )
            return self.config.language_patch_tiles
        return max(1, self.config.language_patch_size // self.teacher.tile_size)

    # ------------------------------------------------------------------ batches
    def next_train(self, step: int, with_language: bool = True) -> tuple[RayBundle, dict]:
        self.train_count += 1
        image_batch = next(self.iter_train_image_dataloader)
        batch = self.train_pixel_sampler.sample(image_batch)
        indices = batch["indices"]  # [N, 3] camera, row, col
        camera_indices = indices[:, :1]
        coords = indices[:, 1:].float() + 0.5  # pixel centres
        language = torch.zeros(len(indices), 1, dtype=torch.bool, device=indices.device)
        if with_language and self.tile_features:
            lang_cameras, lang_coords, clip, patch_shape = self._sample_patches()
            camera_indices = torch.cat([camera_indices, lang_cameras.to(camera_indices)])
            coords = torch.cat([coords, lang_coords.to(coords)])
            language = torch.cat([language, language.new_ones(len(lang_cameras), 1)])
            batch["clip"] = clip.to(self.device)
            batch["language_patch_shape"] = patch_shape  # (patches, rows, cols) of the language rays, in order
        cameras = self.train_ray_generator.cameras
        ray_bundle = cameras.generate_rays(
            camera_indices=camera_indices.to(cameras.device), coords=coords.to(cameras.device)
        )
        ray_bundle.metadata["language"] = language.to(ray_bundle.origins.device)
        return ray_bundle, batch

    def _sample_patches(
        self,
    ) -> tuple[Int[Tensor, "N 1"], Float[Tensor, "N 2"], Float[Tensor, "N D"], tuple[int, int, int]]:
        """Random tile-aligned crops: camera index, pixel coordinates in the tile and teacher feature per ray, and the
        crops' layout ``(patches, rows, cols)`` (rays in patch-major, row-major order; tiles without teacher signal
        are dropped, after which the rays no longer fill that layout).

        Everything is made on the device of the cached features, so the validity mask below indexes tensors of its
        own device (on a GPU, a CUDA mask cannot index CPU tensors).
        """
        tile_px = self.patch_tiles()
        dataset = self.train_dataset
        device = self.tile_features[0].device
        num_patches = self.config.language_patches_per_step
        if self.tile_clusters:
            # a cluster drawn uniformly, one of its tiles at random: the crop's centre
            chosen = torch.randint(len(self.tile_clusters), (num_patches,)).tolist()
            centres = [self.tile_clusters[c][int(torch.randint(len(self.tile_clusters[c]), ()))] for c in chosen]
            image_ids = torch.stack([c[0] for c in centres]).cpu()
        else:
            centres = None
            image_ids = torch.randint(len(self.tile_features), (num_patches,))
        cameras, coords, feats, has_signal = [], [], [], []
        for patch, image_id in enumerate(image_ids.tolist()):
            tiles = self.tile_features[image_id]  # [h, w, D]
            h, w = tiles.shape[:2]
            ph, pw = min(tile_px, h), min(tile_px, w)
            if centres is None:
                top = int(torch.randint(h - ph + 1, ()))
                left = int(torch.randint(w - pw + 1, ()))
            else:  # centred on the chosen tile, kept inside the image
                row, col = int(centres[patch][1]), int(centres[patch][2])
                top = min(max(row - ph // 2, 0), h - ph)
                left = min(max(col - pw // 2, 0), w - pw)
            rows, cols = torch.meshgrid(
                torch.arange(top, top + ph, device=device), torch.arange(left, left + pw, device=device), indexing="ij"
            )
            height = float(dataset.cameras.height[image_id])
            width = float(dataset.cameras.width[image_id])
            # tile centres (or random points in the tiles), in pixels of the dataset image the teacher saw (it may
            # have been resized to a whole number of tiles first)
            if self.config.language_ray_jitter:
                offset = torch.rand(2, ph * pw, device=device)
            else:
                offset = torch.full((2, ph * pw), 0.5, device=device)
            ys = (rows.reshape(-1).float() + offset[0]) * height / h
            xs = (cols.reshape(-1).float() + offset[1]) * width / w
            coords.append(torch.stack([ys, xs], dim=-1))
            own = tiles[top : top + ph, left : left + pw].reshape(ph * pw, -1)
            has_signal.append(valid_tiles(own))
            if self.tile_guides:
                config = self.config
                feats.append(
                    colour_guided_targets(
                        tiles,
                        self.tile_guides[image_id],
                        rows.reshape(-1),
                        cols.reshape(-1),
                        offset.T,
                        config.language_guide_space_sigma,
                        config.language_guide_colour_sigma,
                    )
                )
            else:
                feats.append(own)
            cameras.append(torch.full((ph * pw, 1), image_id, dtype=torch.long, device=device))
        cameras, coords, feats = torch.cat(cameras), torch.cat(coords), torch.cat(feats).float()
        valid = torch.cat(has_signal)  # by the ray's own tile (a guided target mixes its neighbours')
        return cameras[valid], coords[valid], feats[valid], (len(image_ids), ph, pw)


GUIDE_CELLS = 4
"""Colour cells per side of a teacher tile in the guide of 'colour-guided' targets: the colour under a ray is its
cell's mean, a sixteenth of a tile (a 4-pixel cell for dense CLIP's 16-pixel tiles)."""


def guide_colours(image: Float[Tensor, "H W 3"], h: int, w: int) -> Float[Tensor, "hk wk 3"]:
    """The colour guide of an image whose teacher grid is ``h x w`` tiles: its mean colour over ``GUIDE_CELLS`` x
    ``GUIDE_CELLS`` cells per tile (the image resized to whole tiles, as the teacher resizes it)."""
    cells = F.interpolate(image.permute(2, 0, 1)[None], size=(h * GUIDE_CELLS, w * GUIDE_CELLS), mode="area")
    return cells[0].permute(1, 2, 0)  # [h*k, w*k, 3]


def check_guide_sigmas(space_sigma: float, colour_sigma: float) -> None:
    """Refuses widths for which the colour-guided weights are undefined, naming the option."""
    for name, value in (("language-guide-space-sigma", space_sigma), ("language-guide-colour-sigma", colour_sigma)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"--pipeline.datamanager.{name} must be a positive number, got {value}; the defaults are 1.0 (tiles) "
                "and 0.1 (RGB in [0, 1])."
            )


@torch.no_grad()
def colour_guided_targets(
    tiles: Float[Tensor, "h w D"],
    guide: Float[Tensor, "hk wk 3"],
    rows: Int[Tensor, " N"],
    cols: Int[Tensor, " N"],
    offsets: Float[Tensor, "N 2"],
    space_sigma: float,
    colour_sigma: float,
) -> Float[Tensor, "N D"]:
    """Joint-bilateral upsampling of the teacher's tiles at ray points (the guide is the image's colours).

    A ray passes through tile ``(rows, cols)`` at ``offsets`` (row, column fractions in [0, 1)). Its target is the
    mean of the 3x3 tiles around it, each weighted by ``exp(-d^2 / 2 space_sigma^2)``, with ``d`` the distance from
    the ray's point to the tile's centre in tiles, times ``exp(-|c - m|^2 / 2 colour_sigma^2)``, with ``c`` the
    colour of the guide cell the ray passes through and ``m`` the tile's mean colour. Tiles outside the image or
    without teacher signal weigh nothing; a ray whose own tile has no signal gets a zero target (dropped later).
    """
    h, w, _ = tiles.shape
    cells = guide.shape[0] // h
    tile_colours = guide.reshape(h, cells, w, cells, 3).mean(dim=(1, 3))  # [h, w, 3]
    # colour where the ray passes: its guide cell
    cell_rows = rows * cells + (offsets[:, 0] * cells).long().clamp(0, cells - 1)
    cell_cols = cols * cells + (offsets[:, 1] * cells).long().clamp(0, cells - 1)
    colour = guide[cell_rows, cell_cols]  # [N, 3]
    point_y, point_x = rows.float() + offsets[:, 0], cols.float() + offsets[:, 1]  # in tiles
    has_signal = valid_tiles(tiles)  # [h, w]
    neighbours, logits = [], []
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            r, c = rows + dr, cols + dc
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            r, c = r.clamp(0, h - 1), c.clamp(0, w - 1)
            distance2 = (point_y - (r.float() + 0.5)) ** 2 + (point_x - (c.float() + 0.5)) ** 2
            colour2 = ((colour - tile_colours[r, c]) ** 2).sum(dim=-1)
            logit = -distance2 / (2 * space_sigma**2) - colour2 / (2 * colour_sigma**2)
            logits.append(logit.masked_fill(~(inside & has_signal[r, c]), -math.inf))
            neighbours.append((r, c))
    # normalised in log space: a colour unlike every neighbour's would underflow plain exp() weights to 0 / 0
    logits = torch.stack(logits, dim=-1)  # [N, 9]
    logits = torch.where(has_signal[rows, cols][:, None], logits, torch.zeros_like(logits))  # no -inf-only rows
    weights = torch.softmax(logits, dim=-1)
    targets = tiles.new_zeros(len(rows), tiles.shape[-1], dtype=torch.float32)
    for k, (r, c) in enumerate(neighbours):
        targets += weights[:, k : k + 1] * tiles[r, c].float()
    return targets * has_signal[rows, cols][:, None]  # a ray on a tile without signal keeps a zero target


@torch.no_grad()
def cluster_tiles(tile_features: list[Tensor], num_clusters: int, iterations: int = 20) -> list[Tensor]:
    """Groups the valid tiles of every image by feature (k-means with k-means++ seeding on the unit features).

    Returns, per non-empty cluster, the ``[M, 3]`` (image, row, col) indices of its tiles. Uses torch's global RNG
    (seeded by the trainer), no labels.
    """
    if num_clusters < 1:
        raise ValueError(f"--pipeline.datamanager.language-patch-clusters must be at least 1, got {num_clusters}.")
    index, rows = [], []
    for image_id, tiles in enumerate(tile_features):
        flat = tiles.reshape(-1, tiles.shape[-1]).float()
        valid = valid_tiles(flat).nonzero()[:, 0]
        h, w = tiles.shape[:2]
        image = torch.full_like(valid, image_id)
        index.append(torch.stack([image, valid // w, valid % w], dim=-1))
        rows.append(flat[valid])
    index_all, feats = torch.cat(index), torch.cat(rows)  # [M, 3], [M, D]
    # Unit features, not centred: centring would leave the dominant class as normalised noise, split at random.
    feats = torch.nn.functional.normalize(feats, dim=-1)
    k = min(num_clusters, feats.shape[0])
    # k-means++ seeding: each new centre drawn in proportion to the squared distance to the nearest chosen one, so a
    # small, distinct object gets a centre of its own.
    centres = feats[int(torch.randint(feats.shape[0], ()))][None]
    for _ in range(k - 1):
        distance = torch.cdist(feats, centres).amin(dim=-1).square()  # [M]
        if float(distance.sum()) <= 0:
            break
        centres = torch.cat([centres, feats[int(torch.multinomial(distance, 1))][None]])
    for _ in range(iterations):
        assignment = torch.cdist(feats, centres).argmin(dim=-1)  # [M]
        sums = torch.zeros_like(centres).index_add_(0, assignment, feats)
        counts = torch.bincount(assignment, minlength=len(centres)).clamp_min(1)[:, None]
        centres = torch.where(sums.abs().sum(-1, keepdim=True) > 0, sums / counts, centres)
    assignment = torch.cdist(feats, centres).argmin(dim=-1)
    return [index_all[assignment == c] for c in range(len(centres)) if bool((assignment == c).any())]

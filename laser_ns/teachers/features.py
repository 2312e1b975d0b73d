"""The teacher's tile features of a set of images, computed once through the feature cache.

Training reads them three ways (the patch sampler, the tile clusters of balanced sampling, the centring fit), all
through :class:`TeacherFeatures` and :func:`laser_ns.teachers.base.valid_tiles`. With several training processes,
each computes its share of the images into the cache, and every process reads them all back
(``docs/multi_gpu.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jaxtyping import Float, Int
from torch import Tensor
from tqdm import tqdm

from laser_ns import distributed
from laser_ns.teachers.base import DenseTeacher
from laser_ns.teachers.cache import FeatureCache

ImageLoader = Callable[[int], tuple[Float[Tensor, "H W 3"], Int[Tensor, "H W"] | None]]
"""Image ``i`` as the teacher sees it, and its label map (None without labels)."""


@dataclass
class TeacherFeatures:
    """Tile features of every image (fp16, CPU, ``[h, w, D]`` each), the size each image had for the teacher, and how
    many of them this process computed (the others were read from the cache)."""

    tiles: list[Float[Tensor, "h w D"]]
    sizes: list[tuple[int, int]]
    """(width, height) of each image as the teacher saw it."""
    computed: int

    @classmethod
    def compute(
        cls, teacher: DenseTeacher, count: int, load: ImageLoader, cache: FeatureCache, desc: str = "Teacher features"
    ) -> TeacherFeatures:
        """Features of images ``0 .. count-1``, one image in memory at a time, through the cache's one entry point
        (which checks the cache can be written before the teacher first runs)."""
        ranks, rank = distributed.world_size(), distributed.rank()
        sizes: dict[int, tuple[int, int]] = {}

        def features_of(i: int) -> Tensor:
            image, labels = load(i)
            sizes[i] = (image.shape[1], image.shape[0])
            # the cache key hashes the pixels and the size, so it changes with the teacher's image scale
            return cache.features_for_image(teacher, image, labels)

        mine: dict[int, Tensor] = {}
        if ranks > 1:  # each process computes its share, then reads the others' from the cache
            share = range(rank, count, ranks)
            mine = {
                i: features_of(i) for i in tqdm(share, desc=f"{desc} (rank {rank})", unit="image", disable=rank != 0)
            }
            distributed.barrier()
        tiles = [
            mine[i] if i in mine else features_of(i)
            for i in tqdm(range(count), desc=desc, unit="image", disable=rank != 0)
        ]
        return cls(tiles=tiles, sizes=[sizes[i] for i in range(count)], computed=cache.computed)

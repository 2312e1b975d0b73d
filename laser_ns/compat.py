"""Narrow fixes that let nerfstudio 1.1.5's tools load laser_ns checkpoints under torch >= 2.6.

torch 2.6 made ``torch.load`` default to ``weights_only=True``; nerfstudio 1.1.5 calls it without the argument,
and its learning-rate schedulers store numpy float64 values in every checkpoint, which the safe unpickler
refuses. We allow-list exactly the numpy scalar reconstruction and dtype classes, nothing that runs code.
"""

from __future__ import annotations

import numpy as np
import torch


def numpy_checkpoint_globals() -> list:
    """The numpy types that nerfstudio checkpoints contain (scalars of the lr schedulers and their dtypes)."""
    try:
        scalar = np._core.multiarray.scalar  # numpy >= 2
    except AttributeError:
        scalar = np.core.multiarray.scalar  # numpy 1.x
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    return [scalar, np.dtype, *dtypes]


def allow_numpy_scalars_in_checkpoints() -> None:
    """Allow-lists numpy scalars for ``torch.load(weights_only=True)``; a no-op on torch without the API."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:
        add_safe_globals(numpy_checkpoint_globals())

"""Loading what older versions saved: nerfstudio 1.1.5's tools reading our checkpoints under torch >= 2.6, and
config.yml files from before an option existed (:class:`LoadsOlderConfigs`).

torch 2.6 made ``torch.load`` default to ``weights_only=True``; nerfstudio 1.1.5 calls it without the argument,
and its learning-rate schedulers store numpy float64 values in every checkpoint, which the safe unpickler
refuses. We allow-list exactly the numpy scalar reconstruction and dtype classes, nothing that runs code.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, fields
from typing import ClassVar

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


class LoadsOlderConfigs:
    """Mixin of dataclass configs: a ``config.yml`` saved before an option existed loads with the option's legacy
    value, the one that reproduces what that run trained with (``LEGACY``: option name -> value), and options without
    a legacy value get their defaults. PyYAML calls ``__setstate__`` when ``ns-render``, ``ns-viewer``, ``ns-eval``
    and ``laser-eval`` read a saved config."""

    LEGACY: ClassVar[dict[str, object]] = {}

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        for option in fields(self):  # type: ignore[arg-type]
            if option.init and option.name not in state:
                state[option.name] = self.LEGACY[option.name] if option.name in self.LEGACY else _default(option)
        self.__dict__.update(state)


def _default(option: Field) -> object:
    return option.default_factory() if option.default is MISSING else option.default  # type: ignore[misc]

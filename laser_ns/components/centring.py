"""Teacher-feature centring: distil what tells tiles apart, not the direction every CLIP feature shares.

Dense CLIP features are dominated by one direction common to all of them (the image side of the modality gap): tiles
of different classes have cosines of about 0.6 to 0.9 with each other, and the class evidence is a small remainder.
A cosine distillation loss on the raw features is then almost satisfied by that common direction alone, and its
gradient on the class evidence is small. Centring subtracts the mean teacher feature of the scene, ``mu``, and
re-normalises, so the field learns ``normalise(G - mu)``: the part that differs between tiles, at full scale.

Text is still scored against CLIP-space features: :meth:`FeatureCentring.restore` maps a feature of the centred space
back to ``mu + spread * normalise(f)``, where ``spread`` is the mean norm of ``G - mu``. For a teacher feature that
is ``G`` itself up to the spread of its own norm, so relevancy, segmentation and the text losses keep CLIP's meaning.

Before :meth:`fit` (``mu = 0``, ``spread = 1``) both maps only normalise: cosines and every score are unchanged,
which is how runs saved before centring existed load.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from laser_ns.teachers.base import valid_tiles


class FeatureCentring(nn.Module):
    """The scene's mean teacher feature and spread (saved in checkpoints), and the maps into and out of the
    centred space."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("spread", torch.ones(()))
        self.register_load_state_dict_pre_hook(_identity_when_missing)

    @torch.no_grad()
    def fit(self, tile_features: Sequence[Float[Tensor, "h w D"]]) -> None:
        """``mean`` and ``spread`` over every valid tile (non-zero feature) of the training images."""
        rows = [f.reshape(-1, f.shape[-1]).float() for f in tile_features]
        valid = torch.cat([r[valid_tiles(r)] for r in rows]) if rows else torch.zeros(0)
        if valid.shape[0] < 2:
            raise ValueError(
                f"Feature centring needs teacher features of at least two tiles, got {valid.shape[0]}; the teacher "
                "gave no valid tile (all-unlabelled label maps?). Check the scene, or train with "
                "--pipeline.model.centre-teacher-features False."
            )
        mean = valid.mean(dim=0)
        self.mean.copy_(mean.to(self.mean))
        self.spread.copy_((valid - mean).norm(dim=-1).mean().to(self.spread))

    def centre(self, features: Float[Tensor, "N D"]) -> Float[Tensor, "N D"]:
        """``normalise(G - mean)``: the distillation target of a teacher feature."""
        return F.normalize(features - self.mean.to(features), dim=-1)

    def restore(self, features: Float[Tensor, "N D"]) -> Float[Tensor, "N D"]:
        """``mean + spread * normalise(f)``: a centred-space feature back in CLIP's space, where text is scored."""
        return self.mean.to(features) + self.spread.to(features) * F.normalize(features, dim=-1)


_PIPELINE_MODEL = "_model."
"""Where a nerfstudio ``Pipeline`` keeps its model: the prefix of every model key in a pipeline's checkpoint."""


def _identity_when_missing(module: FeatureCentring, state_dict: dict, prefix: str, *args) -> None:
    """A checkpoint from before centring has no buffers: load the identity (mean 0, spread 1).

    Not when the load reaches the centring through a pipeline's ``_model.``: ``Pipeline.load_state_dict`` first loads
    the model from the ``_model.`` keys (here with the model as root, so the prefix has no ``_model.``), then the
    whole pipeline from the other keys, none of the model's. Filling the identity then would undo the centring just
    loaded. The hook cannot tell that case from an old checkpoint by the keys: torch hands each module's hooks only the
    keys under its own prefix, and both dicts have none.
    """
    if f".{_PIPELINE_MODEL}" in f".{prefix}":
        return
    if prefix + "mean" not in state_dict:
        state_dict[prefix + "mean"] = torch.zeros_like(module.mean)
    if prefix + "spread" not in state_dict:
        state_dict[prefix + "spread"] = torch.ones_like(module.spread)

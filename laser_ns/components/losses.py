"""Language losses (docs/method.md#losses), as pure functions.

Notation: G teacher features, F rendered features; `(Go, Ga) = adapter(G)` and `(Fo, Fa) = adapter(F)` are the
centred ("orig") and adapted outputs; T and T_aug are the [C, D] unit-norm text features of the plain and the
doubled prompts. Every loss returns a scalar to minimise (negated similarities).
"""

import math
from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from laser_ns.components.relevancy import cosine_scores


def mean_cosine(a: Float[Tensor, "*batch D"], b: Float[Tensor, "*batch D"]) -> Float[Tensor, ""]:
    """Cosine similarity of matching rows of `a` and `b`, averaged over all rows."""
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-8).mean()


def distillation_loss(rendered: Float[Tensor, "N D"], teacher_adapted: Float[Tensor, "N D"]) -> Float[Tensor, ""]:
    """`L_feat = -cos(stopgrad(Ga), F')`: pulls the rendered features toward the adapted teacher, not back."""
    return -mean_cosine(teacher_adapted.detach(), rendered)


def self_training_loss(teacher_adapted: Float[Tensor, "N D"], teacher_orig: Float[Tensor, "N D"]) -> Float[Tensor, ""]:
    """`L_self = -cos(Ga, Go)` (before the self-cross switch step)."""
    return -mean_cosine(teacher_adapted, teacher_orig)


def self_cross_training_loss(
    teacher_adapted: Float[Tensor, "N D"],
    teacher_orig: Float[Tensor, "N D"],
    rendered_adapted: Float[Tensor, "N D"],
    rendered_orig: Float[Tensor, "N D"],
    field_pull: float = 1.0,
) -> Float[Tensor, ""]:
    """Self-cross training (after the switch step): 0.3 x "each stream to itself" + 0.7 x "each to the other".

    `-(0.3 (cos(Ga, Go) + cos(Fa, sg(Fo))) / 2 + 0.7 (cos(Fa, Go) + cos(Ga, sg(Fo))) / 2)`; the centred rendered
    features Fo are a target only, so the field is not pulled toward its own adapted output.

    ``field_pull`` is the share of the teacher stream's cross term that pulls Ga toward the field's sg(Fo); the rest
    pulls it toward Go: `cos(Ga, sg(Fo))` becomes `p cos(Ga, sg(Fo)) + (1 - p) cos(Ga, Go)`. 1 is the paper. Below 1
    the distillation target Ga follows the field's own output less, the loop in which the target learns the field's
    mistakes (benchmarks/RESULTS.md); every term keeps its weight.
    """
    if not 0.0 <= field_pull <= 1.0:
        raise ValueError(f"field_pull must lie in [0, 1] (1 is the paper); got {field_pull}.")
    ga, go, fa, fo = teacher_adapted, teacher_orig, rendered_adapted, rendered_orig.detach()
    self_terms = (mean_cosine(ga, go) + mean_cosine(fa, fo)) / 2
    teacher_cross = mean_cosine(ga, fo)
    if field_pull < 1.0:
        teacher_cross = field_pull * teacher_cross + (1.0 - field_pull) * mean_cosine(ga, go)
    cross_terms = (mean_cosine(fa, go) + teacher_cross) / 2
    return -(0.3 * self_terms + 0.7 * cross_terms)


def minmax_normalize(x: Float[Tensor, "R K"], eps: float = 1e-8) -> Float[Tensor, "R K"]:
    """Maps each row of `x` to [0, 1] by its own min and max (a constant row becomes zeros)."""
    lo = x.amin(dim=-1, keepdim=True)
    hi = x.amax(dim=-1, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(eps)


def text_augmentation_loss(
    teacher_adapted: Float[Tensor, "N D"],
    teacher_orig: Float[Tensor, "N D"],
    text: Float[Tensor, "C D"],
    text_aug: Float[Tensor, "C D"],
) -> Float[Tensor, ""]:
    """`L_aug = -(cos_rows(Ga T^T, norm(Go T_aug^T)) + cos_rows(T Ga^T, norm(T_aug Go^T))) / 2`.

    Both relevancy maps are plain dot products, as the formula is written (features are not re-normalised).
    `norm` is a per-row min-max to [0, 1]: in the first term the rows of the [N, C] maps are pixels (normalised
    over classes), in the second the rows of the [C, N] maps are classes (normalised over pixels). `cos_rows`
    is `mean_cosine` over those rows. With a single class the per-pixel target is all zeros (no information).
    """
    relevancy = teacher_adapted @ text.T  # [N, C]
    relevancy_aug = teacher_orig @ text_aug.T  # [N, C]
    per_pixel = mean_cosine(relevancy, minmax_normalize(relevancy_aug))  # rows = pixels
    per_class = mean_cosine(relevancy.T, minmax_normalize(relevancy_aug.T))  # rows = classes
    return -(per_pixel + per_class) / 2


def soft_cross_entropy(logits: Tensor, target_probs: Tensor, dim: int) -> Float[Tensor, ""]:
    """`-sum_k p_k log softmax(logits)_k` along the class axis `dim`, averaged over every other position.

    `logits` are raw scores (not log-probabilities, though log-softmax is idempotent so those also work) and
    `target_probs` sum to 1 along `dim`. Gradients reach `target_probs` too unless the caller detaches it.
    """
    if logits.shape != target_probs.shape:
        raise ValueError(
            f"soft_cross_entropy needs logits and targets of one shape, got {tuple(logits.shape)} and "
            f"{tuple(target_probs.shape)}; compute both over the same rows and classes."
        )
    return -(target_probs * torch.log_softmax(logits, dim=dim)).sum(dim=dim).mean()


LabelVolumeLoss = Literal["balanced", "reference", "detached"]
"""How the classification loss couples the label volume and the features (see label_volume_classification_loss)."""

REFERENCE_STRENGTH_RATIO = (0.02, 0.04)
"""The reference's classification gradient on the rendered features, as a fraction of the distillation gradient
(train_seg.py of xingy038/Laser, measured on its numerics): the label volume is a gentle regulariser there."""


def label_volume_classification_loss(
    label_logits: Float[Tensor, "N C"],
    feats_list: Sequence[Float[Tensor, "N D"]],
    text: Float[Tensor, "C D"],
    tau: float = 0.2,
    mode: LabelVolumeLoss = "balanced",
    strength: float = 1.0,
    over_rays: bool = True,
) -> Float[Tensor, ""]:
    """Classification with the label volume (docs/method.md#label-volume), in its clean form: proper soft
    cross-entropies.

    For each feature set f (the caller passes F', Ga and their mean), the feature logits are `cos(f, t_c) / tau`;
    `label_logits` are the label volume's scaled class scores (:meth:`LabelVolume.class_logits`). Each pair is
    compared two ways, over classes for each ray (softmax over C) and over rays for each class (softmax over N), and
    the two are averaged, as the reference pairs them.

    - ``"balanced"`` (the paper's direction): the feature logits are the cross-entropy's input and the label volume's
      distribution `softmax(label_logits)` its target, neither detached, so the features and the label volume pull on
      each other. The sum is multiplied by ``strength``. The gradient of a soft cross-entropy on its logits is
      bounded (a difference of two distributions), so ``strength`` bounds the pull on the features whatever the
      label volume's scale; Adam makes it irrelevant to the label volume's own grids, which only this loss trains.
      At ``strength`` 1 this is the old "mutual" loss, 35 to 180x the reference's pull (benchmarks/RESULTS.md).
    - ``"detached"``: the label logits are the input and the feature distributions fixed targets; only the label
      volume (and its scale) learns, by fitting the features' distributions (times ``strength``).

    ``over_rays=False`` keeps only the per-ray comparison (softmax over classes), without the per-class one over the
    batch's rays; the per-ray term alone is then the whole loss (not halved).

    The reference's exact numerics are :func:`reference_classification_loss`.
    """
    if len(feats_list) == 0:
        raise ValueError("label_volume_classification_loss needs at least one feature set in feats_list.")
    if mode not in ("balanced", "detached"):
        raise ValueError(
            f"Unknown label volume loss mode {mode!r} here; choose 'balanced' or 'detached' "
            "('reference' is reference_classification_loss)."
        )
    dims = (1, 0) if over_rays else (1,)  # 1: over classes, per ray; 0: over rays, per class
    total = label_logits.new_zeros(())
    for feats in feats_list:
        feature_logits = cosine_scores(feats, text) / tau  # [N, C]
        for dim in dims:
            if mode == "balanced":
                term = soft_cross_entropy(feature_logits, torch.softmax(label_logits, dim=dim), dim=dim)
            else:
                target = torch.softmax(feature_logits.detach(), dim=dim)
                term = soft_cross_entropy(label_logits, target, dim=dim)
            total = total + term / len(dims)
    return strength * total


def reference_classification_loss(
    label_scores: Float[Tensor, "N C"],
    unit_feats_list: Sequence[Float[Tensor, "N D"]],
    text: Float[Tensor, "C D"],
    tau: float,
    patch_shape: tuple[int, int, int],
) -> Float[Tensor, ""]:
    """The released code's classification loss, numerics included (train_seg.py of xingy038/Laser).

    ``label_scores`` are the label volume's unscaled scores `s @ T^T` (about +-0.004), ``unit_feats_list`` the
    features exactly as the reference forms them (F' and Ga normalised, and their plain average, not re-normalised),
    ``patch_shape`` the layout ``(patches, rows, cols)`` of the N language rays. What the reference does, kept here as
    it is because it is what produced the paper's numbers:

    - the feature scores `f @ T^T / tau` are log-softmaxed over classes (and `T f^T / tau` over rays), then
      reshaped to ``[B, h, w, C]`` (the over-rays map is a ``[C, N]`` array read in that shape, which scrambles it);
    - ``F.cross_entropy`` reads axis 1 (the patch rows ``h``) as the class axis, and takes the raw scores
      `s @ T^T` (and `T s^T`, scrambled alike) as "probabilities", neither detached.

    Its gradient on the features is 2 to 4% of the distillation gradient (:data:`REFERENCE_STRENGTH_RATIO`).
    """
    num_patches, rows, cols = patch_shape
    n = label_scores.shape[0]
    if num_patches * rows * cols != n:
        raise ValueError(
            f"The reference classification loss needs whole patches: {n} language rays do not form the patch layout "
            f"{patch_shape}. Some tiles were dropped (no teacher signal); use --pipeline.model.label-volume-loss "
            "balanced for this scene."
        )
    layout = (num_patches, rows, cols, -1)
    target = label_scores.reshape(layout)
    target_t = label_scores.T.reshape(layout)  # [C, N] read as [B, h, w, C], as the reference does
    total = label_scores.new_zeros(())
    for feats in unit_feats_list:
        scores = feats @ text.T  # [N, C]
        log_p = torch.log_softmax(scores / tau, dim=1).reshape(layout)
        log_p_t = torch.log_softmax(scores.T / tau, dim=1).reshape(layout)
        total = (
            total
            + (torch.nn.functional.cross_entropy(log_p, target) + torch.nn.functional.cross_entropy(log_p_t, target_t))
            / 2
        )
    return total


def max_score_margin(text: Float[Tensor, "C D"]) -> Float[Tensor, "C C"]:
    """Largest label-volume score margin `s @ (t_a - t_b)` any ray can reach, for every ordered class pair (a, b).

    The label volume's s is `softmax(r)` with every rendered channel value r_k in [0, 1] (sigmoids accumulated
    with weights summing to at most 1). Maximising the ratio `sum_k e^{r_k} d_k / sum_k e^{r_k}` over that box puts
    r_k = 1 exactly on the channels with the largest d_k (a threshold rule), so the best of the D prefixes of the
    sorted d is the maximum. Diagonal entries are 0.
    """
    d = (text[:, None, :] - text[None, :, :]).sort(dim=-1, descending=True).values  # [C, C, D]
    num = d.shape[-1]
    top = d.cumsum(dim=-1)  # [C, C, D] sum of the j largest, j = 1..D
    rest = d.sum(dim=-1, keepdim=True) - top
    j = torch.arange(1, num + 1, dtype=text.dtype, device=text.device)
    return ((math.e * top + rest) / (math.e * j + (num - j))).amax(dim=-1).clamp_min(0.0)

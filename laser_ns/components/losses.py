"""Language losses of METHOD.md section 6, as pure functions.

Notation: G teacher features, F rendered features; `(Go, Ga) = adapter(G)` and `(Fo, Fa) = adapter(F)` are the
centred ("orig") and adapted outputs; T and T_aug are the [C, D] unit-norm text features of the plain and the
doubled prompts. Every loss returns a scalar to minimise (negated similarities).
"""

from collections.abc import Sequence

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
) -> Float[Tensor, ""]:
    """Self-cross training (after the switch step): 0.3 x "each stream to itself" + 0.7 x "each to the other".

    `-(0.3 (cos(Ga, Go) + cos(Fa, sg(Fo))) / 2 + 0.7 (cos(Fa, Go) + cos(Ga, sg(Fo))) / 2)`; the centred rendered
    features Fo are a target only, so the field is not pulled toward its own adapted output.
    """
    ga, go, fa, fo = teacher_adapted, teacher_orig, rendered_adapted, rendered_orig.detach()
    self_terms = (mean_cosine(ga, go) + mean_cosine(fa, fo)) / 2
    cross_terms = (mean_cosine(fa, go) + mean_cosine(ga, fo)) / 2
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


def label_volume_classification_loss(
    label_scores: Float[Tensor, "N C"],
    feats_list: Sequence[Float[Tensor, "N D"]],
    text: Float[Tensor, "C D"],
    tau: float = 0.2,
    label_tau: float | None = None,
    detach_targets: bool = True,
) -> Float[Tensor, ""]:
    """Trains the label volume's class scores toward the class distributions of several feature sets.

    For each feature set f (the caller passes F', Ga and their mean `(F' + Ga) / 2`), targets are
    `softmax(cos(f, t_c) / tau)` taken two ways: over classes for each ray (softmax over C) and over rays for
    each class (softmax over N). The label logits `label_scores / label_tau` are fitted to both by
    `soft_cross_entropy` along the same axis; the 2 x len(feats_list) terms are summed.

    Gradients: with `detach_targets=True` (default) only the label volume learns here; the feature
    distributions are fixed targets. With `detach_targets=False` gradients also reach the features through
    the targets (cross-entropy w.r.t. its target pushes each target toward the label volume's most likely
    class, a consistency pull on the features).

    Scale: `label_scores = s @ T^T` with s a distribution over the D channels and T unit-norm, so a score is
    `|s| cos(s, t_c)` with `|s| <= 1`: it lives on the same cosine scale as the targets' `cos(f, t_c)` but no
    larger, and unscaled logits that small would give near-uniform label distributions that can never match
    the targets (the loss would then only push s toward ever more extreme channels). Dividing by the same
    temperature (`label_tau` defaults to `tau`) puts both sides on one logit scale, so the minimum is reached
    exactly when the label volume reproduces the targets.
    """
    if len(feats_list) == 0:
        raise ValueError("label_volume_classification_loss needs at least one feature set in feats_list.")
    label_logits = label_scores / (tau if label_tau is None else label_tau)  # [N, C]
    total = label_scores.new_zeros(())
    for feats in feats_list:
        feature_logits = cosine_scores(feats, text) / tau  # [N, C]
        if detach_targets:
            feature_logits = feature_logits.detach()
        total = total + soft_cross_entropy(label_logits, torch.softmax(feature_logits, dim=1), dim=1)  # per ray
        total = total + soft_cross_entropy(label_logits, torch.softmax(feature_logits, dim=0), dim=0)  # per class
    return total

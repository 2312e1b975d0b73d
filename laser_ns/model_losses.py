"""The language loss terms of one training step (docs/method.md#losses): which losses apply, on which features.

Beside the model: it reads the model's config and calls the label volume, the adapter and the loss functions
of :mod:`laser_ns.components.losses`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from laser_ns.components import losses
from laser_ns.components.adapter import Adapter
from laser_ns.fields.language_field import LabelVolume
from laser_ns.model_config import LaserModelConfig


def language_loss_dict(
    config: LaserModelConfig,
    rendered: Float[Tensor, "N D"],
    teacher: Float[Tensor, "N D"],
    label_distribution: Float[Tensor, "N D"] | None,
    label_volume: LabelVolume | None,
    adapter: Adapter | None,
    class_text: Float[Tensor, "C D"],
    class_text_aug: Float[Tensor, "C D"],
    self_cross: bool,
    restore: Callable[[Tensor], Tensor] | None = None,
    patch_shape: tuple[int, int, int] | None = None,
    self_cross_progress: float = 0.0,
) -> dict[str, Tensor]:
    """Weighted ``*_loss`` terms from the rendered features F, the teacher features G and the label distributions.

    ``label_distribution`` is the label volume's rendered channel distribution s; ``label_volume`` turns it into
    scaled class logits (both None when the model has no label volume).

    ``config`` is the model's (``LaserModelConfig``): loss weights and ablation switches. ``self_cross`` says whether
    the schedule has reached self-cross training (``use_self_cross`` still decides whether it is used).
    ``restore`` maps features of the distilled space to the space text is scored in, where the text losses compare
    them with text (the model's scoring space; None: the features are scored as they are).
    ``patch_shape`` is the language rays' layout ``(patches, rows, cols)``, which the reference classification loss
    needs.
    ``self_cross_progress`` is how far the step is through self-cross training (0 at the switch, 1 at the last step);
    the pull toward the field fades with it when ``self_cross_field_pull_final`` is set.
    """
    restore = restore or (lambda x: x)
    cfg = config
    self_cross = cfg.use_self_cross and self_cross
    has_classes = class_text.shape[0] > 0
    result: dict[str, Tensor] = {}

    # Adapter on teacher (and rendered, once self-cross training has started) features.
    if adapter is not None:
        teacher_orig, teacher_adapted = adapter(teacher)
        if self_cross:
            rendered_orig, rendered_adapted = adapter(rendered)
            # F' is what inference scores: adapter(F) as in the paper (adapter_at_inference), else F itself, which
            # would otherwise be supervised by nothing after the switch and drift (measured: benchmarks/RESULTS.md).
            student = rendered_adapted if cfg.adapter_at_inference else rendered
            self_loss = losses.self_cross_training_loss(
                teacher_adapted,
                teacher_orig,
                rendered_adapted,
                rendered_orig,
                self_cross_field_pull(cfg, self_cross_progress),
            )
        else:
            student = rendered
            self_loss = losses.self_training_loss(teacher_adapted, teacher_orig)
        result["self_loss"] = cfg.self_loss_mult * self_loss
        if cfg.use_text_augmentation and has_classes:
            result["text_aug_loss"] = cfg.text_aug_loss_mult * losses.text_augmentation_loss(
                restore(teacher_adapted), restore(teacher_orig), class_text, class_text_aug
            )
    else:
        teacher_adapted, student = teacher, rendered
    result["feature_loss"] = cfg.feature_loss_mult * losses.distillation_loss(student, teacher_adapted)

    # Label volume: classification over the scene's classes, coupled to the class distributions of F', Ga and
    # their mean (the mean of the unit features, as the reference computes it).
    if label_distribution is not None and label_volume is not None and has_classes:
        student_clip = F.normalize(restore(student), dim=-1)
        feats = [student_clip]  # 'rendered': the adapted teacher, the distillation target, is left alone
        if cfg.label_volume_features == "all":
            teacher_clip = F.normalize(restore(teacher_adapted), dim=-1)
            feats += [teacher_clip, (student_clip + teacher_clip) / 2]
        if cfg.label_volume_loss == "reference":
            if patch_shape is None:
                raise ValueError("The reference classification loss needs the language rays' patch layout.")
            classification = losses.reference_classification_loss(
                label_distribution @ class_text.T, feats, class_text, cfg.tau, patch_shape
            )
        else:
            label_logits = label_volume.class_logits(label_distribution, class_text, cfg.tau)  # [N, C]
            classification = losses.label_volume_classification_loss(
                label_logits,
                feats,
                class_text,
                cfg.tau,
                cfg.label_volume_loss,
                cfg.label_volume_strength,
                cfg.label_volume_over_rays,
            )
        result["classification_loss"] = cfg.classification_loss_mult * classification
    return result


def self_cross_field_pull(config: LaserModelConfig, progress: float) -> float:
    """Self-cross training's pull toward the field ``progress`` of the way from the switch (0) to the last step (1):
    ``self_cross_field_pull`` throughout, or fading linearly to ``self_cross_field_pull_final`` when that is set."""
    start, final = config.self_cross_field_pull, config.self_cross_field_pull_final
    return start if final is None else start + (final - start) * progress

"""LaserModel through a real pipeline on a tiny generated scene: phases, losses, switches, outputs."""

from __future__ import annotations

import pytest
import torch
from nerfstudio.field_components.field_heads import FieldHeadNames

from tests.conftest import tiny_pipeline_config


def build(scene, **overrides):
    config = tiny_pipeline_config(scene, **overrides)
    return config.setup(device="cpu", test_mode="val")


@pytest.fixture(scope="module")
def pipeline(tiny_scene):
    torch.manual_seed(0)
    return build(tiny_scene)


def train_step(pipeline, step: int):
    model = pipeline.model
    model.train()
    model.schedule.set_step(step)
    return pipeline.get_train_loss_dict(step)


def test_geometry_phase_has_no_language_loss(pipeline):
    _, loss_dict, _ = train_step(pipeline, 0)
    assert "rgb_loss" in loss_dict
    assert not any(k in loss_dict for k in ("feature_loss", "classification_loss", "self_loss"))


def test_language_phase_losses_and_gradients(pipeline):
    model = pipeline.model
    phases = model.schedule.phases
    language_start = phases.language_start
    assert 0 < language_start < phases.joint_start < phases.self_cross_start < phases.total_steps
    outputs, loss_dict, metrics = train_step(pipeline, language_start)
    for key in ("feature_loss", "classification_loss", "self_loss", "text_aug_loss", "rgb_loss"):
        assert key in loss_dict and torch.isfinite(loss_dict[key]), key
    assert outputs["clip_features"].shape[-1] == 512
    model.zero_grad(set_to_none=True)
    sum(loss_dict.values()).backward()
    # language fields learn; density is frozen and received nothing
    assert model.language_field.grid.encoding.hash_table.grad is not None
    assert model.label_volume.linear.weight.grad is not None
    assert all(p.grad is None for p in model.density_parameters())
    assert "feature_cosine" in metrics


def test_language_never_reaches_density(tiny_scene):
    """Even with density trainable, the language losses give it no gradient (detached weights and positions)."""
    pipeline = build(tiny_scene)
    model = pipeline.model
    model.train()
    ray_bundle, batch = pipeline.datamanager.next_train(0, with_language=True)
    model.schedule.step = model.schedule.phases.self_cross_start  # self-cross, but nothing frozen
    outputs = model(ray_bundle)
    language_terms = ("feature_loss", "classification_loss", "self_loss", "text_aug_loss")
    loss_dict = model.get_loss_dict(outputs, batch, model.get_metrics_dict(outputs, batch))
    language = {k: v for k, v in loss_dict.items() if k in language_terms}
    assert set(language) == set(language_terms)
    sum(language.values()).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.density_parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.appearance_parameters())


def test_phase_freezing(pipeline):
    model = pipeline.model
    language_start, joint_start = model.schedule.phases.language_start, model.schedule.phases.joint_start
    model.schedule.set_step(0)
    assert all(p.requires_grad for p in model.density_parameters() + model.appearance_parameters())
    model.schedule.set_step(language_start)
    assert not any(p.requires_grad for p in model.density_parameters() + model.appearance_parameters())
    model.schedule.set_step(joint_start)
    assert not any(p.requires_grad for p in model.density_parameters())
    assert all(p.requires_grad for p in model.appearance_parameters())


def test_self_cross_switch_uses_adapted_rendered_features(pipeline, monkeypatch):
    model = pipeline.model
    switch = model.schedule.phases.self_cross_start
    calls = []
    original = model.adapter.forward
    monkeypatch.setattr(model.adapter, "forward", lambda x: calls.append(x.shape[0]) or original(x))
    train_step(pipeline, switch - 1)
    assert len(calls) == 1  # self-training: adapter on the teacher only
    calls.clear()
    train_step(pipeline, switch)
    assert len(calls) == 2  # self-cross: teacher and rendered features


def test_self_cross_field_pull_reaches_the_loss(tiny_scene, monkeypatch):
    from laser_ns.components import losses

    pipeline = build(tiny_scene, self_cross_field_pull=0.25)
    pulls = []
    original = losses.self_cross_training_loss
    monkeypatch.setattr(losses, "self_cross_training_loss", lambda *a: pulls.append(a[-1]) or original(*a))
    train_step(pipeline, pipeline.model.schedule.phases.self_cross_start)
    assert pulls == [0.25]


def test_self_cross_field_pull_fades_from_the_switch_to_the_last_step(tiny_scene, monkeypatch):
    from laser_ns.components import losses

    pipeline = build(tiny_scene, self_cross_field_pull=1.0, self_cross_field_pull_final=0.2)
    phases = pipeline.model.schedule.phases
    pulls = []
    original = losses.self_cross_training_loss
    monkeypatch.setattr(losses, "self_cross_training_loss", lambda *a: pulls.append(a[-1]) or original(*a))
    start, last = phases.self_cross_start, phases.total_steps - 1
    middle = (start + last) // 2
    for step in (start, middle, last):
        train_step(pipeline, step)
    expected_middle = 1.0 - 0.8 * (middle - start) / (last - start)
    assert pulls == pytest.approx([1.0, expected_middle, 0.2])


def test_a_final_field_pull_out_of_range_is_named(tiny_scene):
    with pytest.raises(ValueError, match="self-cross-field-pull-final is 1.5"):
        build(tiny_scene, self_cross_field_pull_final=1.5)


def test_label_volume_over_rays_reaches_the_loss(tiny_scene, monkeypatch):
    from laser_ns.components import losses

    pipeline = build(tiny_scene, label_volume_over_rays=False)
    seen = []
    original = losses.label_volume_classification_loss
    monkeypatch.setattr(
        losses, "label_volume_classification_loss", lambda *a, **k: seen.append(a[-1]) or original(*a, **k)
    )
    train_step(pipeline, pipeline.model.schedule.phases.language_start)
    assert seen == [False]


@pytest.mark.parametrize("features", ["all", "rendered"])
def test_label_volume_on_rendered_features_leaves_the_adapter_alone(tiny_scene, features):
    torch.manual_seed(0)
    pipeline = build(tiny_scene, label_volume_features=features)
    model = pipeline.model
    _, loss_dict, _ = train_step(pipeline, model.schedule.phases.language_start)
    model.zero_grad(set_to_none=True)
    loss_dict["classification_loss"].backward()
    adapter_grad = sum(float(p.grad.abs().sum()) for p in model.adapter.parameters() if p.grad is not None)
    assert model.label_volume.linear.weight.grad is not None
    assert (adapter_grad > 0) == (features == "all")


def test_per_ray_only_is_refused_with_the_reference_loss(tiny_scene):
    with pytest.raises(ValueError, match="label-volume-over-rays False"):
        build(tiny_scene, label_volume_over_rays=False, label_volume_loss="reference")


def test_a_field_pull_outside_zero_to_one_is_refused(tiny_scene):
    with pytest.raises(ValueError, match="self-cross-field-pull is 2.0"):
        build(tiny_scene, self_cross_field_pull=2.0)


@pytest.mark.parametrize(
    "switch, module, loss",
    [
        ("use_adapter", "adapter", "self_loss"),
        ("use_transient_attention", "transient_attention", None),
        ("use_label_volume", "label_volume", "classification_loss"),
        ("use_text_augmentation", None, "text_aug_loss"),
    ],
)
def test_ablation_switch_removes_its_part(tiny_scene, switch, module, loss):
    pipeline = build(tiny_scene, **{switch: False})
    model = pipeline.model
    if module is not None:
        assert getattr(model, module) is None
        assert not any(name.startswith(module + ".") for name in model.state_dict())
    _, loss_dict, _ = train_step(pipeline, model.schedule.phases.self_cross_start)
    assert "feature_loss" in loss_dict
    if loss is not None:
        assert loss not in loss_dict


def test_all_switches_off_is_plain_distillation(tiny_scene):
    off = dict(use_adapter=False, use_transient_attention=False, use_label_volume=False, use_text_augmentation=False)
    pipeline = build(tiny_scene, **off)
    _, loss_dict, _ = train_step(pipeline, pipeline.model.schedule.phases.self_cross_start)
    language = {k for k in loss_dict if k not in ("rgb_loss", "interlevel_loss", "distortion_loss")}
    assert language == {"feature_loss"}


def test_render_outputs(pipeline):
    model = pipeline.model
    model.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    outputs = model.get_outputs_for_camera(camera)
    h, w = int(camera.height), int(camera.width)
    assert outputs["rgb"].shape == (h, w, 3)
    assert outputs["segmentation"].shape == (h, w, 3)
    assert outputs["segmentation_label_volume"].shape == (h, w, 3)
    classes = outputs["segmentation_class"]
    assert classes.min() >= 0 and classes.max() < len(model.class_names)
    for i in range(len(model.class_names)):
        relevancy = outputs[f"relevancy_{i}"]
        assert relevancy.shape == (h, w, 1) and relevancy.min() >= 0 and relevancy.max() <= 1
    assert not any(v.shape[-1] == 512 for v in outputs.values())  # no heavy features at render time


def test_render_does_not_depend_on_the_chunk_size(pipeline):
    """Every pixel's language outputs are its own: no mixing across the rays of a render chunk."""
    model = pipeline.model
    language_start = model.schedule.phases.language_start
    for step in range(language_start, language_start + 2):
        train_step(pipeline, step)  # fills the transient attention's running summary
    model.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    chunk = model.config.eval_num_rays_per_chunk
    try:
        model.config.eval_num_rays_per_chunk = 1024
        whole = model.get_outputs_for_camera(camera)
        model.config.eval_num_rays_per_chunk = 97  # does not divide the image
        split = model.get_outputs_for_camera(camera)
    finally:
        model.config.eval_num_rays_per_chunk = chunk
    assert torch.equal(whole["segmentation_class"], split["segmentation_class"])
    torch.testing.assert_close(whole["relevancy_0"], split["relevancy_0"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("transient", [True, False])
def test_rendered_features_equal_the_per_sample_formula(tiny_scene, transient):
    """The reassociated renderer (512-channel maps once per ray) equals sum_s w_s attention(field(x_s)) per ray."""
    torch.manual_seed(0)
    pipeline = build(tiny_scene, use_transient_attention=transient)
    model = pipeline.model.eval()
    with torch.no_grad():
        model.language_field.head.bias.normal_()  # a zero bias would hide a wrongly weighted one
        ray_bundle = model.collider(pipeline.datamanager.eval_dataset.cameras[0:1].generate_rays(0).flatten()[:300])
        ray_samples, _, _ = model.proposal_sampler(ray_bundle, density_fns=model.density_fns)
        weights = ray_samples.get_weights(model.field.forward(ray_samples)[FieldHeadNames.DENSITY])
        features, _ = model._render_language(ray_samples, weights)

        keep = weights[..., 0] > model.config.weight_threshold
        per_sample = model.language_field(ray_samples.frustums.get_positions()[keep])  # [K, 512]
        if transient:
            per_sample = model.transient_attention(per_sample)
        expected = torch.zeros_like(features).index_add(0, keep.nonzero()[:, 0], weights[keep] * per_sample)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("render", ["per_sample", "per_ray"])
def test_label_distribution_follows_the_render_option(tiny_scene, render):
    """The model renders the label volume as its config says; 'per_sample' is the paper's formula as it was."""
    import copy

    from laser_ns.method_configs import laser_lite_config

    label_volume = copy.deepcopy(laser_lite_config().pipeline.model.label_volume)
    label_volume.render = render
    torch.manual_seed(0)
    pipeline = build(tiny_scene, label_volume=label_volume)
    model = pipeline.model.eval()
    assert model.label_volume.render_mode == render
    with torch.no_grad():
        ray_bundle = model.collider(pipeline.datamanager.eval_dataset.cameras[0:1].generate_rays(0).flatten()[:300])
        ray_samples, _, _ = model.proposal_sampler(ray_bundle, density_fns=model.density_fns)
        weights = ray_samples.get_weights(model.field.forward(ray_samples)[FieldHeadNames.DENSITY])
        _, label_dist = model._render_language(ray_samples, weights)

        keep = weights[..., 0] > model.config.weight_threshold
        positions, ray_index = ray_samples.frustums.get_positions()[keep], keep.nonzero()[:, 0]
        per_sample = torch.zeros_like(label_dist).index_add(0, ray_index, weights[keep] * model.label_volume(positions))
        if render == "per_sample":
            assert torch.equal(label_dist, torch.softmax(per_sample, dim=-1))
        else:
            torch.testing.assert_close(
                label_dist, torch.softmax(model.label_volume.render(positions, weights[keep], ray_index, 300), dim=-1)
            )


def test_set_queries_changes_relevancy_outputs(pipeline):
    model = pipeline.model
    model.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    model.predictor.set_queries(["red apple"])
    try:
        outputs = model.get_outputs_for_camera(camera)
        assert "relevancy_0" in outputs and "relevancy_1" not in outputs
    finally:
        model.predictor.set_queries(model.class_names)


def test_checkpoint_state_holds_no_teacher_weights(pipeline):
    keys = list(pipeline.state_dict())
    assert not any("teacher" in k or "clip_model" in k or "visual" in k for k in keys)


def test_dense_clip_teacher_trains_and_stays_out_of_checkpoints(tiny_scene, tmp_path):
    """The real open_clip path (random weights, no download) through the datamanager, model and state dict."""
    config = tiny_pipeline_config(tiny_scene)
    config.teacher_type = "clip"
    config.teacher.pretrained = None
    config.teacher.allow_random_weights = True
    config.datamanager.cache_dir = tmp_path / "cache"
    pipeline = config.setup(device="cpu", test_mode="val")
    assert pipeline.datamanager.tile_features[0].shape == (3, 4, 512)  # 48x64 image -> 3x4 tiles
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 8  # one cached file per image
    _, loss_dict, _ = train_step(pipeline, pipeline.model.schedule.phases.language_start)
    assert torch.isfinite(loss_dict["feature_loss"])
    state = pipeline.state_dict()
    assert sum(v.numel() for v in state.values()) < 10_000_000  # ViT-B/16 alone has ~150M
    assert not any("visual" in k or "resblocks" in k for k in state)


@pytest.mark.parametrize("mode", ["balanced", "reference", "detached"])
def test_classification_loss_reaches_exactly_its_parameters(tiny_scene, mode):
    """balanced and reference: the feature field (grid, MLP, head), transient attention, adapter, label volume (and
    its scale, which the reference's unscaled scores do not use); detached: the label volume side only. Never the
    radiance field or the proposal networks."""
    torch.manual_seed(0)
    pipeline = build(tiny_scene, label_volume_loss=mode)
    model = pipeline.model
    with torch.no_grad():  # the residual attention starts at zero (no gradient behind out_proj); as after some steps
        model.transient_attention.out_proj.weight.normal_(std=0.01)
    model.train()
    model.schedule.set_step(model.schedule.phases.self_cross_start)  # F' = adapter(F): the adapter is on both sides
    _, loss_dict, _ = pipeline.get_train_loss_dict(model.schedule.phases.self_cross_start)
    model.zero_grad(set_to_none=True)
    loss_dict["classification_loss"].backward()

    def reached(module) -> dict[str, bool]:
        return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in module.named_parameters()}

    label_side = reached(model.label_volume)
    if mode == "reference":
        assert not label_side.pop("log_scale")
    assert all(label_side.values()), label_side  # grid, linear, log_scale
    feature_side = {
        **{f"language_field.{n}": r for n, r in reached(model.language_field).items()},
        **{f"transient_attention.{n}": r for n, r in reached(model.transient_attention).items()},
        **{f"adapter.{n}": r for n, r in reached(model.adapter).items()},
    }
    assert any(n.startswith("language_field.grid") for n in feature_side)
    assert any(n.startswith("language_field.hidden") for n in feature_side)
    if mode != "detached":
        assert all(feature_side.values()), {n: r for n, r in feature_side.items() if not r}
    else:
        assert not any(feature_side.values()), {n: r for n, r in feature_side.items() if r}
    radiance = [*model.field.parameters(), *model.proposal_networks.parameters()]
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in radiance)


def test_label_volume_scale_trains_with_the_grids(pipeline):
    """The log-scale needs the grids' step size (LabelVolume's docstring), and is in no other group."""
    groups = pipeline.model.get_param_groups()
    scale = pipeline.model.label_volume.log_scale
    assert [name for name, params in groups.items() if any(p is scale for p in params)] == ["language_grids"]


def test_label_scale_past_its_cap_is_moved_back_after_each_step_so_it_can_come_down(tiny_scene):
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation

    model = build(tiny_scene).model
    volume = model.label_volume
    attributes = TrainingCallbackAttributes(optimizers=None, grad_scaler=None, pipeline=None, trainer=None)
    after = [
        c
        for c in model.get_training_callbacks(attributes)
        if TrainingCallbackLocation.AFTER_TRAIN_ITERATION in c.where_to_run
    ]
    optimizer = torch.optim.SGD([volume.log_scale], lr=0.1)
    with torch.no_grad():
        volume.log_scale.fill_(volume.max_log_scale + 0.5)  # where an optimizer step can leave it
    for callback in after:
        callback.run_callback(step=0)
    assert volume.log_scale.item() == pytest.approx(volume.max_log_scale)
    volume.logit_scale().backward()  # a loss that wants a smaller scale
    assert volume.log_scale.grad.item() != 0.0
    optimizer.step()
    assert volume.log_scale.item() < volume.max_log_scale


def test_checkpoint_saved_before_the_label_scale_loads(pipeline, tiny_scene):
    old = {k: v for k, v in pipeline.model.state_dict().items() if k != "label_volume.log_scale"}
    fresh = build(tiny_scene).model
    with torch.no_grad():
        fresh.label_volume.log_scale.fill_(2.0)
    fresh.load_state_dict(old)  # strict: the missing scale is filled in with the old behaviour (1/tau)
    assert fresh.label_volume.log_scale.item() == 0.0


@pytest.mark.parametrize("score_space", ["centred", "clip"])
def test_teacher_in_scoring_space_maps_tiles_as_the_run_maps_its_features(tiny_scene, score_space):
    """The like-for-like teacher baseline: a tile feature goes where the run's rendered features are scored (its
    centred target, restored to CLIP's space with score_space 'clip'); a tile without signal stays zero."""
    model = build(tiny_scene, score_space=score_space).model
    assert model.centring is not None and model.centring.mean.abs().sum() > 0  # fitted on the scene's tiles
    tiles = torch.nn.functional.normalize(torch.randn(3, 4, model.predictor.dim), dim=-1)
    tiles[0, 0] = 0.0
    mapped = model.teacher_in_scoring_space(tiles)
    assert mapped.shape == tiles.shape and mapped[0, 0].abs().max() == 0
    expected = model.centring.centre(tiles[1])
    if score_space == "clip":
        expected = model.centring.restore(expected)
    torch.testing.assert_close(mapped[1], expected)
    plain = build(tiny_scene, centre_teacher_features=False).model
    torch.testing.assert_close(plain.teacher_in_scoring_space(tiles[1]), tiles[1])  # no centring: the teacher as is

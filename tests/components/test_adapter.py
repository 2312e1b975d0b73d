import math

import pytest
import torch

from laser_ns.components.adapter import Adapter, AdapterConfig, sinusoidal_position_embedding


def _naive(adapter: Adapter, x: torch.Tensor, c_orig: float, c_adapted: float):
    """docs/method.md#adapter-and-self-cross-training written out, given the two centres."""
    n, d = x.shape
    pe = torch.zeros(n, d, dtype=x.dtype)
    for pos in range(n):
        for i in range(0, d, 2):
            angle = pos / (10000 ** (i / d))
            pe[pos, i] = math.sin(angle)
            pe[pos, i + 1] = math.cos(angle)
    z = x + pe
    q, k, v = z @ adapter.to_q.weight.T, z @ adapter.to_k.weight.T, z @ adapter.to_v.weight.T
    weights = torch.softmax(q @ k.T / math.sqrt(q.shape[1]), dim=1)  # softmax over the N rows
    u = (weights @ v) @ adapter.out_proj.weight.T
    u2 = adapter.mlp(u) + u
    x_orig = x - c_orig
    return x_orig, 0.2 * u2 + 0.8 * x_orig - c_adapted


def test_config_builds_adapter():
    adapter = AdapterConfig(attn_dim=8, hidden_dim=16, max_tokens=100).setup(dim=64)
    assert isinstance(adapter, Adapter)
    assert adapter.to_q.weight.shape == (8, 64) and adapter.max_tokens == 100
    assert all(layer.bias is None for layer in (adapter.to_q, adapter.to_k, adapter.to_v, adapter.out_proj))


def test_sinusoidal_table_values_and_any_length():
    table = sinusoidal_position_embedding(50_000, 8)
    assert table.shape == (50_000, 8)
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0] * 4))
    pos, i = 40_000, 2
    angle = pos / 10000 ** (2 * i / 8)
    torch.testing.assert_close(table[pos, 2 * i], torch.tensor(math.sin(angle)), atol=1e-3, rtol=0)
    torch.testing.assert_close(table[pos, 2 * i + 1], torch.tensor(math.cos(angle)), atol=1e-3, rtol=0)


def test_matches_naive_reference_in_eval_mode():
    torch.manual_seed(0)
    adapter = AdapterConfig(attn_dim=4, hidden_dim=8).setup(dim=16).double().eval()
    adapter.orig_centre.fill_(0.3)
    adapter.adapted_centre.fill_(-0.1)
    x = torch.randn(12, 16, dtype=torch.float64)
    x_orig, x_adapted = adapter(x)
    ref_orig, ref_adapted = _naive(adapter, x, 0.3, -0.1)
    torch.testing.assert_close(x_orig, ref_orig)
    torch.testing.assert_close(x_adapted, ref_adapted)


@pytest.mark.parametrize("scaled_attention", [True, False])
def test_attention_weights_are_those_the_forward_pass_applies(scaled_attention):
    """attention_weights (for diagnostics) times the values is what forward hands to out_proj, with either scaling
    and with the input rescaled to input_norm."""
    torch.manual_seed(0)
    config = AdapterConfig(attn_dim=4, hidden_dim=8, input_norm=3.0, scaled_attention=scaled_attention)
    adapter = config.setup(dim=16).double().eval()
    x = torch.randn(10, 16, dtype=torch.float64)
    seen = []
    adapter.out_proj.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    adapter(x)
    weights = adapter.attention_weights(x)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(10, dtype=torch.float64))
    _, z = adapter.tokens(x)
    torch.testing.assert_close(weights @ adapter.to_v(z), seen[0])
    naive = torch.softmax(
        (z @ adapter.to_q.weight.T) @ (z @ adapter.to_k.weight.T).T / (2.0 if scaled_attention else 1.0), dim=-1
    )
    torch.testing.assert_close(weights, naive)


def test_training_updates_ema_before_use():
    torch.manual_seed(0)
    adapter = AdapterConfig(attn_dim=4, hidden_dim=8).setup(dim=16).double().train()
    x1 = torch.randn(10, 16, dtype=torch.float64) + 2.0
    x_orig, x_adapted = adapter(x1)
    # The first batch initialises the EMA to its own mean, and the updated value is what gets subtracted.
    torch.testing.assert_close(adapter.orig_centre, x1.mean())
    assert abs(x_orig.mean().item()) < 1e-12
    assert abs(x_adapted.mean().item()) < 1e-12
    x2 = torch.randn(10, 16, dtype=torch.float64) - 1.0
    c_before = adapter.orig_centre.clone()
    x_orig2, _ = adapter(x2)
    expected = 0.9 * c_before + 0.1 * x2.mean()
    torch.testing.assert_close(adapter.orig_centre, expected)
    torch.testing.assert_close(x_orig2, x2 - expected)
    assert int(adapter.num_updates) == 2


def test_output_is_centred_after_warm_up():
    torch.manual_seed(0)
    adapter = AdapterConfig(attn_dim=8, hidden_dim=16).setup(dim=32).train()
    for _ in range(60):
        adapter(torch.randn(64, 32) + 5.0)
    adapter.eval()
    x_orig, x_adapted = adapter(torch.randn(256, 32) + 5.0)
    assert abs(x_orig.mean().item()) < 0.05
    assert abs(x_adapted.mean().item()) < 0.05


def test_eval_mode_does_not_touch_buffers():
    adapter = AdapterConfig(attn_dim=4, hidden_dim=8).setup(dim=16).eval()
    before = {name: buf.clone() for name, buf in adapter.named_buffers()}
    adapter(torch.randn(10, 16) + 3.0)
    for name, buf in adapter.named_buffers():
        assert torch.equal(buf, before[name]), name


def test_centres_are_saved_buffers_not_parameters():
    adapter = AdapterConfig(attn_dim=4, hidden_dim=8).setup(dim=16).train()
    adapter(torch.randn(10, 16) + 1.0)
    state = adapter.state_dict()
    assert {"orig_centre", "adapted_centre", "num_updates"} <= set(state)
    param_names = {name for name, _ in adapter.named_parameters()}
    assert not param_names & {"orig_centre", "adapted_centre"}
    restored = AdapterConfig(attn_dim=4, hidden_dim=8).setup(dim=16)
    restored.load_state_dict(state)
    assert torch.equal(restored.orig_centre, adapter.orig_centre)


def test_batch_larger_than_any_table_and_max_tokens_error():
    adapter = AdapterConfig(attn_dim=4, hidden_dim=8, max_tokens=3000).setup(dim=16).eval()
    with torch.no_grad():
        x_orig, x_adapted = adapter(torch.randn(3000, 16))
    assert x_adapted.shape == (3000, 16) and torch.isfinite(x_adapted).all()
    with pytest.raises(ValueError, match="max_tokens=3000"):
        adapter(torch.randn(3001, 16))


def test_gradients_reach_every_parameter_and_input():
    torch.manual_seed(0)
    adapter = AdapterConfig(attn_dim=4, hidden_dim=8).setup(dim=16).train()
    x = torch.randn(10, 16, requires_grad=True)
    _, x_adapted = adapter(x)
    x_adapted.square().sum().backward()
    for name, param in adapter.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_empty_input_leaves_ema_alone():
    adapter = AdapterConfig(attn_dim=4, hidden_dim=8).setup(dim=16).train()
    x_orig, x_adapted = adapter(torch.zeros(0, 16))
    assert x_orig.shape == x_adapted.shape == (0, 16)
    assert int(adapter.num_updates) == 0 and torch.isfinite(adapter.orig_centre)

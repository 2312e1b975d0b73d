import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from laser_ns.components.transient_attention import TransientQueryAttention, TransientQueryAttentionConfig


def _naive(module: TransientQueryAttention, x: torch.Tensor) -> torch.Tensor:
    """Literal docs/method.md#transient-query-attention, written with explicit weight matrices."""
    wq, wk, wv = module.to_q.weight.T, module.to_k.weight.T, module.to_v.weight.T  # [in, E]
    queries = module.transient_queries  # [3E, E]
    q, k, v = x @ wq, x @ wk, x @ wv
    a1 = torch.exp(q @ queries.T)
    a1 = a1 / a1.sum(dim=1, keepdim=True)  # softmax over the 3E queries
    a2 = torch.exp(queries @ k.T)
    a2 = a2 / a2.sum(dim=1, keepdim=True)  # softmax over the N samples
    out = a1 @ (a2 @ v) + q
    return out @ module.out_proj.weight.T + (x if module.residual else 0.0)


def _randomise_out_proj(module: TransientQueryAttention) -> TransientQueryAttention:
    """The residual form starts with out_proj at zero; tests of what the attention computes need it non-zero."""
    with torch.no_grad():
        module.out_proj.weight.normal_(std=0.1)
    return module


def test_config_builds_module_with_expected_shapes():
    module = TransientQueryAttentionConfig(embed_dim=8).setup(in_dim=64)
    assert isinstance(module, TransientQueryAttention)
    assert module.transient_queries.shape == (24, 8)
    assert module.to_q.bias is None and module.out_proj.bias is None
    assert TransientQueryAttentionConfig(embed_dim=16).setup(in_dim=512).transient_queries.shape == (48, 16)


def test_transient_queries_init_is_small_truncated_normal():
    torch.manual_seed(0)
    queries = TransientQueryAttentionConfig(embed_dim=48).setup(in_dim=512).transient_queries.detach()
    assert abs(queries.std().item() - 0.02) < 0.004
    assert queries.abs().max().item() <= 0.04 + 1e-6  # truncated at +-2 std


@pytest.mark.parametrize("residual", [True, False])
def test_matches_naive_reference(residual):
    torch.manual_seed(0)
    module = _randomise_out_proj(
        TransientQueryAttentionConfig(embed_dim=8, residual=residual).setup(in_dim=64).double()
    )
    with torch.no_grad():
        module.transient_queries.normal_(std=0.5)  # larger than init so the softmaxes are far from uniform
    x = torch.randn(37, 64, dtype=torch.float64)
    torch.testing.assert_close(module(x), _naive(module, x))


def test_residual_form_starts_as_plain_distillation_and_learns_from_out_proj():
    torch.manual_seed(0)
    module = TransientQueryAttentionConfig(embed_dim=4).setup(in_dim=32)
    x = torch.randn(20, 32, requires_grad=True)
    out = module(x)
    torch.testing.assert_close(out, x)  # out_proj at zero: the features pass unchanged
    out.square().sum().backward()
    assert module.out_proj.weight.grad.abs().sum() > 0  # and the correction starts learning
    paper = TransientQueryAttentionConfig(embed_dim=4, residual=False).setup(in_dim=32)
    assert paper.out_proj.weight.abs().sum() > 0 and not torch.allclose(paper(x), x)


def test_rows_interact_through_the_batch():
    torch.manual_seed(0)
    module = _randomise_out_proj(TransientQueryAttentionConfig(embed_dim=4).setup(in_dim=16))
    with torch.no_grad():
        module.transient_queries.normal_(std=1.0)
    x = torch.randn(10, 16)
    changed = x.clone()
    changed[5:] += 3.0
    # Row 0 is unchanged, but its output depends on the other samples via the pooled summary.
    assert not torch.allclose(module(x)[0], module(changed)[0])


def test_cost_is_linear_in_number_of_samples():
    module = TransientQueryAttentionConfig(embed_dim=48).setup(in_dim=512)

    def flops(n: int) -> int:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            module(torch.randn(n, 512))
        return counter.get_total_flops()

    ratio = flops(4000) / flops(1000)
    assert 3.9 < ratio < 4.1, ratio  # an N x N step would push this toward 16


def test_large_batch_runs_without_quadratic_memory():
    module = TransientQueryAttentionConfig(embed_dim=8).setup(in_dim=64)
    # 200k x 200k floats would need 160 GB; this passes only if nothing N x N is formed.
    with torch.no_grad():
        out = module(torch.randn(200_000, 64))
    assert out.shape == (200_000, 64)


@pytest.mark.parametrize("residual", [True, False])
def test_gradients_reach_every_parameter(residual):
    torch.manual_seed(0)
    module = _randomise_out_proj(TransientQueryAttentionConfig(embed_dim=4, residual=residual).setup(in_dim=32))
    x = torch.randn(20, 32, requires_grad=True)
    module(x).square().sum().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_empty_batch():
    module = TransientQueryAttentionConfig(embed_dim=4).setup(in_dim=32)
    assert module(torch.zeros(0, 32)).shape == (0, 32)


def test_eval_uses_running_summary_so_outputs_do_not_depend_on_the_chunk():
    torch.manual_seed(0)
    module = _randomise_out_proj(TransientQueryAttentionConfig(embed_dim=4, momentum=0.5).setup(in_dim=16))
    with torch.no_grad():
        module.transient_queries.normal_(std=1.0)
    batches = [torch.randn(50, 16) for _ in range(3)]
    expected = module.summary(*module.project(batches[0])[1:]).detach()
    for x in batches[1:]:
        expected = 0.5 * expected + 0.5 * module.summary(*module.project(x)[1:]).detach()
    for x in batches:
        module(x)  # training mode updates the EMA
    torch.testing.assert_close(module.running_summary, expected)

    module.eval()
    x = torch.randn(40, 16)
    whole = module(x)
    chunks = torch.cat([module(x[:7]), module(x[7:])])
    torch.testing.assert_close(whole, chunks)
    # and it is the running summary that is read, not the chunk's own
    q = module.to_q(x)
    read = torch.softmax(q @ module.transient_queries.T, dim=-1) @ module.running_summary
    torch.testing.assert_close(whole, x + module.out_proj(read + q))


def test_eval_before_any_training_step_pools_the_chunk():
    torch.manual_seed(0)
    module = (
        TransientQueryAttentionConfig(embed_dim=4).setup(in_dim=16).eval()
    )  # a fresh module: no running summary yet
    x = torch.randn(12, 16)
    assert torch.allclose(module(x), _naive(module, x), atol=1e-6)


def test_projecting_through_a_linear_head_equals_projecting_its_output():
    torch.manual_seed(0)
    module = TransientQueryAttentionConfig(embed_dim=8, residual=False).setup(in_dim=64).double()
    head = torch.nn.Linear(16, 64).double()
    hidden = torch.randn(30, 16, dtype=torch.float64)
    for fused, plain in zip(module.project_through(hidden, head), module.project(head(hidden)), strict=True):
        torch.testing.assert_close(fused, plain)
    # and the attention's output, projected after a weighted sum, is the weighted sum of the outputs
    weights = torch.rand(30, 1, dtype=torch.float64)
    mixed = module.mix(*module.project_through(hidden, head))
    torch.testing.assert_close(module.out_proj((weights * mixed).sum(0)), (weights * module(head(hidden))).sum(0))

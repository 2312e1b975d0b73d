"""'auto' follows the device the model runs on, not only what the machine has."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from laser_ns.fields import backend


@pytest.fixture
def machine_with_tcnn(monkeypatch):
    """A machine with CUDA and tinycudann installed (faked: neither needs to be here)."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "tinycudann" else real_find_spec(name, *a)
    )


def test_auto_picks_torch_for_a_cpu_model_even_with_tcnn(machine_with_tcnn):
    assert backend.resolve_implementation("auto", torch.device("cpu")) == "torch"
    assert backend.resolve_implementation("auto", "cpu") == "torch"


def test_auto_picks_tcnn_for_a_cuda_model(machine_with_tcnn):
    assert backend.resolve_implementation("auto", torch.device("cuda")) == "tcnn"


def test_tcnn_on_cpu_is_refused_with_the_fix(machine_with_tcnn):
    with pytest.raises(RuntimeError, match="needs a CUDA device.*implementation torch"):
        backend.resolve_implementation("tcnn", "cpu")


def test_without_tcnn_auto_is_torch_and_tcnn_is_refused(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert backend.resolve_implementation("auto", "cuda") == "torch"
    with pytest.raises(RuntimeError, match="tiny-cuda-nn is not usable"):
        backend.resolve_implementation("tcnn", "cuda")

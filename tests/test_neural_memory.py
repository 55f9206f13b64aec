"""The neural memory: one-shot writes recall, persist across calls, snapshot exactly, and train (SQLite: test_storage.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from memory.config import NeuralMemoryConfig
from memory.neural import NeuralMemory

V = 64  # the tiny controller's width


def memory(rule: str = "g", layers: int = 2, **kw) -> NeuralMemory:
    torch.manual_seed(0)
    return NeuralMemory(NeuralMemoryConfig(rule=rule, layers=layers, heads=4, key_dim=64, hidden_dim=64, **kw), V)


def rel_error(read: torch.Tensor, value: torch.Tensor) -> float:
    return ((read - value).norm() / value.norm()).item()


def test_one_layer_write_is_exact_at_beta_one():
    mem = memory(layers=1)
    mem.reset(3)
    k, v = torch.randn(3, 64), torch.randn(3, V)
    mem.write(k, v, torch.ones(3))
    assert rel_error(mem.read(k), v) < 1e-5


@pytest.mark.parametrize("rule", ["g", "p"])
def test_one_shot_write_then_read_recalls_with_enough_beta(rule):
    mem = memory(rule)
    mem.reset(2)
    k, v = torch.randn(2, 64), torch.randn(2, V)
    before = rel_error(mem.read(k), v)
    for _ in range(3):  # three writes of the same pair stand in for one write with larger beta
        mem.write(k, v, torch.ones(2))
    after = rel_error(mem.read(k), v)
    assert after < 0.3 * before


@pytest.mark.parametrize("rule", ["g", "p"])
def test_meta_training_makes_a_single_write_recall(rule):
    """A few meta-steps on random pairs: one write must then recall better than at init."""
    mem = memory(rule)
    opt = torch.optim.Adam(mem.parameters(), lr=0.03)
    gen = torch.Generator().manual_seed(1)

    def one_write_error() -> torch.Tensor:
        k, v = torch.randn(16, 2, 64, generator=gen), torch.randn(16, 2, V, generator=gen)
        mem.reset(16)
        mem.write(k[:, 0], v[:, 0], torch.ones(16))
        mem.write(k[:, 1], v[:, 1], torch.ones(16))
        return (mem.read(k) - v).pow(2).sum() / v.pow(2).sum()

    with torch.no_grad():
        before = one_write_error().item()
    for _ in range(40):
        opt.zero_grad()
        one_write_error().backward()
        opt.step()
    with torch.no_grad():
        after = one_write_error().item()
    assert after < 0.7 * before


def test_beta_zero_leaves_an_episode_untouched():
    mem = memory()
    mem.reset(2)
    k, v = torch.randn(2, 64), torch.randn(2, V)
    before = mem.read(k)
    mem.write(k, v, torch.tensor([1.0, 0.0]))
    after = mem.read(k)
    assert not torch.allclose(after[0], before[0])
    assert torch.equal(after[1], before[1])


def test_writes_persist_across_calls_and_latest_value_wins():
    mem = memory(layers=1)
    mem.reset(1)
    # orthonormal within every head's slice: no interference in a linear memory
    keys = torch.eye(16)[:5].repeat(1, 4).unsqueeze(0)
    values = torch.randn(1, 5, V)
    for i in range(5):  # one call per turn; nothing is reset in between
        mem.write(keys[:, i], values[:, i], torch.ones(1))
    assert rel_error(mem.read(keys), values) < 1e-4
    newer = torch.randn(1, V)
    mem.write(keys[:, 2], newer, torch.ones(1))
    assert rel_error(mem.read(keys[:, 2]), newer) < 1e-4
    assert rel_error(mem.read(keys[:, 0]), values[:, 0]) < 1e-4


def test_hand_written_backprop_equals_autograd():
    mem = memory(layers=3)
    state = mem.initial_state(2)
    state.weights = [w.detach().clone().requires_grad_() for w in state.weights]
    k, v = torch.randn(2, 4, 64), torch.randn(2, 4, V)
    h0, _ = mem._split_keys(k)
    target = v.view(2, 4, 4, -1).transpose(1, 2)
    pre = mem._forward(state, h0)
    loss = (pre[-1] - target).pow(2).sum()
    grads = torch.autograd.grad(loss, state.weights)
    deltas = mem._gradient_deltas(state, pre, target)
    inputs = [h0] + [torch.tanh(p) for p in pre[:-1]]
    for i, (x, d) in enumerate(zip(inputs, deltas)):
        torch.testing.assert_close(x.transpose(-1, -2) @ d, grads[i])


@pytest.mark.parametrize("rule", ["g", "p"])
def test_gradient_reaches_the_interface_through_a_write(rule):
    mem = memory(rule)
    interface = torch.nn.Linear(8, 64 + V + 1)
    x = torch.randn(2, 8)
    out = interface(x)
    k, v, beta = out[:, :64], out[:, 64:-1], torch.sigmoid(out[:, -1])
    mem.reset(2)
    mem.write(k, v, beta)
    loss = F.mse_loss(mem.read(k), v.detach())
    loss.backward()
    assert interface.weight.grad.abs().sum() > 0
    assert mem.init_w[0].grad.abs().sum() > 0
    assert mem.log_step.grad.abs().sum() > 0
    if rule == "p":
        assert mem.feedback[0].grad.abs().sum() > 0


def test_write_works_at_chat_time_under_inference_mode():
    mem = memory()
    with torch.inference_mode():
        mem.reset(1)
        k, v = torch.randn(1, 64), torch.randn(1, V)
        before = rel_error(mem.read(k), v)
        mem.write(k, v, torch.ones(1))
        assert rel_error(mem.read(k), v) < before


@pytest.mark.parametrize("rule", ["g", "p"])
def test_snapshot_round_trip_is_identity(rule):
    mem = memory(rule)
    mem.reset(1)
    k = torch.randn(1, 3, 64)
    mem.write(k, torch.randn(1, 3, V), torch.ones(1))
    expected = mem.read(k).detach()
    fresh = memory(rule)
    fresh.load_snapshot(mem.snapshot())
    assert torch.equal(fresh.read(k), expected)
    with pytest.raises(ValueError, match="shape"):
        memory(rule, layers=1).load_snapshot(mem.snapshot())

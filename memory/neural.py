"""The meta-learned neural memory (MNM, Munkhdalai et al. 2019).

The memory is a multi-head MLP: head j maps its slice of a key to its slice of a
value. Its weights are the content: a write changes them in one shot, a read is
a forward pass. The slow (meta-learned) parameters are the initial fast weights,
the per-layer step sizes and, for MNM-p, the feedback matrices; the fast weights
are per-episode (training) or per-user (chat) state, kept with a batch dimension
so that B episodes are trained at once and one user is served with B = 1 by the
same code.

Two write rules:
  * MNM-g: one gradient step on ||M(k_w) - v_w||^2, scaled by beta. The gradient
    is backpropagated by hand (no torch.autograd.grad), so a write works under
    `torch.inference_mode()` at chat time and is still differentiable, to second
    order, when meta-training backpropagates through it.
  * MNM-p: a learned local rule. Every layer gets its own target, propagated down
    from the value by learned feedback matrices; each layer then moves towards its
    target using only its own input and output (no backpropagation through the
    memory).

Both rules normalise each layer's step by the squared norm of its input (at
least 1; normalised LMS), and keys are L2-normalised per head, so that at beta = 1
and step size 1/2 a single-layer memory stores the value at a key exactly, whatever
the width; beta then reads as "how much to overwrite".

Fast weights survive turns and restarts: `snapshot()`/`load_snapshot()` give and
take plain tensors (storage/neural.py keeps one snapshot per chat user in SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import NeuralMemoryConfig


@dataclass
class FastWeights:
    """The memory's content for B episodes or users: weights[l] is [B, heads, d_in(l), d_out(l)].

    Biases are slow parameters of the module, never written: a bias change would move
    the read at every key, so every write would disturb all the others.
    """

    weights: list[torch.Tensor]

    @property
    def batch_size(self) -> int:
        return self.weights[0].shape[0]


class NeuralMemory(nn.Module):
    """A multi-head MLP memory with one-shot writes.

    Args:
        cfg: heads, key width, hidden width, layers, write rule, what is learned.
        value_dim: width of a value (the controller's embedding width); divisible by heads.
    """

    def __init__(self, cfg: NeuralMemoryConfig, value_dim: int) -> None:
        super().__init__()
        if cfg.rule not in ("g", "p"):
            raise ValueError(f"neural_memory.rule must be 'g' or 'p', got {cfg.rule!r}")
        if cfg.key_dim % cfg.heads or value_dim % cfg.heads:
            raise ValueError(f"key_dim {cfg.key_dim} and value_dim {value_dim} must divide by heads {cfg.heads}")
        if cfg.layers < 1:
            raise ValueError("neural_memory.layers must be at least 1")
        self.cfg = cfg
        self.heads = cfg.heads
        self.key_dim = cfg.key_dim
        self.value_dim = value_dim
        dims = [cfg.key_dim // cfg.heads] + [cfg.hidden_dim] * (cfg.layers - 1) + [value_dim // cfg.heads]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.init_w = nn.ParameterList(
            nn.Parameter(torch.randn(cfg.heads, d_in, d_out) / d_in**0.5, requires_grad=cfg.learn_init)
            for d_in, d_out in pairs
        )
        self.bias = nn.ParameterList(
            nn.Parameter(torch.zeros(cfg.heads, 1, d_out), requires_grad=cfg.learn_init) for _, d_out in pairs
        )
        # log step size per layer. A step of 1/2 in one layer alone closes the whole gap
        # (the squared error's gradient carries a factor 2); the layers' steps add up,
        # so each starts with its share.
        self.log_step = nn.Parameter(torch.full((cfg.layers,), 0.5 / cfg.layers).log(), requires_grad=cfg.learn_step)
        if cfg.rule == "p":
            # feedback[l] carries the target of layer l+1's pre-activation down to layer l's.
            self.feedback = nn.ParameterList(
                nn.Parameter(torch.randn(cfg.heads, d_out, d_in) / d_out**0.5)
                for d_in, d_out in zip(dims[1:-1], dims[2:])
            )
        self.fast: FastWeights | None = None

    # ---- state -------------------------------------------------------------------

    def initial_state(self, batch_size: int) -> FastWeights:
        """The meta-learned starting content, repeated for `batch_size` episodes."""
        return FastWeights([w.unsqueeze(0).expand(batch_size, *w.shape) for w in self.init_w])

    def reset(self, batch_size: int = 1) -> None:
        """Forget everything: back to the initial content, for `batch_size` episodes."""
        self.fast = self.initial_state(batch_size)

    def _state(self) -> FastWeights:
        if self.fast is None:
            raise RuntimeError("the memory has no state yet; call reset() or load_snapshot() first")
        return self.fast

    def snapshot(self) -> dict[str, torch.Tensor]:
        """The fast weights as detached CPU tensors (names w0, w1, ...)."""
        return {f"w{i}": w.detach().to("cpu", torch.float32).contiguous() for i, w in enumerate(self._state().weights)}

    def load_snapshot(self, snap: dict[str, torch.Tensor]) -> None:
        """Restore fast weights taken by `snapshot()`; shapes must match this memory."""
        device, dtype = self.init_w[0].device, self.init_w[0].dtype
        weights = []
        for i, w0 in enumerate(self.init_w):
            w = snap[f"w{i}"]
            if w.shape[1:] != w0.shape:
                raise ValueError(f"snapshot layer {i} has shape {tuple(w.shape)}, memory expects [B, {tuple(w0.shape)}]")
            weights.append(w.to(device, dtype))
        self.fast = FastWeights(weights)

    # ---- the function --------------------------------------------------------------

    def _split_keys(self, k: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """[B, D] or [B, N, D] -> normalised per head [B, heads, N, D/heads], and whether N was added."""
        single = k.dim() == 2
        if single:
            k = k.unsqueeze(1)
        b, n, _ = k.shape
        k = k.view(b, n, self.heads, -1).transpose(1, 2)
        return F.normalize(k, dim=-1), single

    def _forward(self, state: FastWeights, h: torch.Tensor) -> list[torch.Tensor]:
        """Pre-activations of every layer for per-head inputs h [B, heads, N, d0]."""
        pre = []
        for i, (w, b) in enumerate(zip(state.weights, self.bias)):
            if i:
                h = torch.tanh(pre[-1])
            pre.append(torch.matmul(h, w) + b)
        return pre

    def _join(self, out: torch.Tensor, single: bool) -> torch.Tensor:
        """[B, heads, N, dv] -> [B, N, heads*dv] (or [B, V] when the key had no N)."""
        b, _, n, _ = out.shape
        out = out.transpose(1, 2).reshape(b, n, self.value_dim)
        return out.squeeze(1) if single else out

    def read(self, k_r: torch.Tensor) -> torch.Tensor:
        """Read the values stored at keys `k_r` ([B, key_dim] or [B, N, key_dim]).

        Returns: [B, value_dim] or [B, N, value_dim].
        """
        h, single = self._split_keys(k_r)
        return self._join(self._forward(self._state(), h)[-1], single)

    def write(self, k_w: torch.Tensor, v_w: torch.Tensor, beta: torch.Tensor) -> None:
        """Store values `v_w` at keys `k_w` in one update of the fast weights.

        Args:
            k_w: [B, key_dim] or [B, N, key_dim] (N pairs written together).
            v_w: [B, value_dim] or [B, N, value_dim].
            beta: write strength, [B] or [B, heads]; 0 leaves episode b untouched.
        """
        state = self._state()
        h0, _ = self._split_keys(k_w)
        if v_w.dim() == 2:
            v_w = v_w.unsqueeze(1)
        b, n, _ = v_w.shape
        target = v_w.view(b, n, self.heads, -1).transpose(1, 2)  # [B, heads, N, dv]
        beta = beta.view(b, -1, 1, 1).expand(b, self.heads, 1, 1)
        pre = self._forward(state, h0)
        inputs = [h0] + [torch.tanh(p) for p in pre[:-1]]
        if self.cfg.rule == "g":
            deltas = self._gradient_deltas(state, pre, target)
        else:
            deltas = self._local_deltas(pre, target)
        step = self.log_step.exp()
        weights = []
        for i, (w, x, d) in enumerate(zip(state.weights, inputs, deltas)):
            # normalised LMS: each pair's step shrinks with its input's squared norm
            d = d / x.pow(2).sum(-1, keepdim=True).clamp_min(1.0)
            weights.append(w - beta * step[i] * torch.matmul(x.transpose(-1, -2), d))
        self.fast = FastWeights(weights)

    def _gradient_deltas(self, state: FastWeights, pre: list[torch.Tensor], target: torch.Tensor) -> list[torch.Tensor]:
        """d||out - v||^2 / d(pre-activation) of every layer: hand-written backprop (MNM-g)."""
        delta = 2.0 * (pre[-1] - target)
        deltas = [delta]
        for i in range(len(pre) - 1, 0, -1):
            back = torch.matmul(delta, state.weights[i].transpose(-1, -2))
            delta = back * (1.0 - torch.tanh(pre[i - 1]).pow(2))
            deltas.append(delta)
        return deltas[::-1]

    def _local_deltas(self, pre: list[torch.Tensor], target: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's error against its own target; targets flow down by learned feedback (MNM-p)."""
        z = target
        deltas = [2.0 * (pre[-1] - z)]
        for i in range(len(pre) - 2, -1, -1):
            z = torch.matmul(z, self.feedback[i])
            deltas.append(2.0 * (pre[i] - z))
        return deltas[::-1]

"""A lean batch-1 forward of a llama-architecture LM over a preallocated KV cache: the controller's decode path.

transformers' `generate` spends most of a 135M model's decode step in Python: module
calls, cache objects, mask building and logits processing around ~400 small matmuls.
This reads the same weights (the merged adapter, the grown-token rows as they are at
each call) through fused matrices and a fixed cache, so a step is a dozen tensor ops
per layer. A decode step may instead read low-precision copies of the matrices, which
halve (float16) or quarter (weight-only int8, one scale per output row, torch's
`_weight_int8pack_mm`) the bytes it streams; prefill stays float32.
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .kv_cache import KVCache

def supports(model: PreTrainedModel) -> bool:
    """Whether `model` has exactly the llama computation this module re-implements."""
    c = model.config
    rope = getattr(c, "rope_parameters", None) or getattr(c, "rope_scaling", None) or {}
    return (c.model_type == "llama" and not c.attention_bias and not getattr(c, "mlp_bias", False)
            and c.hidden_act == "silu" and getattr(c, "pretraining_tp", 1) == 1
            and rope.get("rope_type", "default") == "default")


class _Layer:
    """One decoder block's weights: fused q|k|v and gate|up matrices (sharing the model's storage)."""

    def __init__(self, block: nn.Module) -> None:
        attn, mlp = block.self_attn, block.mlp
        self.in_norm, self.post_norm = block.input_layernorm.weight, block.post_attention_layernorm.weight
        self.qkv = _fuse(attn.q_proj, attn.k_proj, attn.v_proj)
        self.o = attn.o_proj.weight
        self.gate_up = _fuse(mlp.gate_proj, mlp.up_proj)
        self.down = mlp.down_proj.weight
        self.copies: dict[str, Weights] = {}  # the decode step's low-precision copies, by matrix name

    def compress(self, weights: str) -> None:
        self.copies = {name: _compress(getattr(self, name), weights) for name in ("qkv", "o", "gate_up", "down")}


def _fuse(*linears: nn.Linear) -> torch.Tensor:
    """One [sum(out), in] matrix whose row blocks become the linears' weights (views, no copy)."""
    with torch.inference_mode(False):  # the model's weights must stay usable by autograd (vocabulary row fitting)
        fused = torch.cat([lin.weight.detach() for lin in linears])
        start = 0
        for lin in linears:
            rows = lin.weight.shape[0]
            lin.weight = nn.Parameter(fused[start:start + rows], requires_grad=False)
            start += rows
    return fused


# A low-precision copy of a [O, I] matrix: float16 [O, I], or int8 [O, I] with [O] bfloat16 row scales.
Weights = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
DECODE_WEIGHTS = ("float32", "float16", "int8")


def _compress(weight: torch.Tensor, weights: str) -> Weights:
    """weight: [O, I] float32 -> its copy in `weights` ("float16", or "int8": symmetric, one scale per row)."""
    if weights == "float16":
        return weight.to(torch.float16)
    scale = weight.float().abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.round(weight.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale.to(torch.bfloat16)


def _linear(x: torch.Tensor, copy: Weights) -> torch.Tensor:
    """x: [T, I] float32 through a low-precision copy -> [T, O] float32."""
    if isinstance(copy, tuple):
        return torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), *copy).float()
    return F.linear(x.to(copy.dtype), copy).float()


class LeanLlama:
    """The forward of a llama `model` for one sequence, over a `KVCache`.

    Args:
        model: a llama-architecture causal LM (`supports(model)`), float32, on the CPU, in
            eval mode. Its linear layers' weights become views of the fused matrices.
        base_rows: rows of the output layer that never change (the base vocabulary); a
            low-precision decode step copies them once and reads the rows after them
            (grown tokens) in float32 at each call.
    """

    def __init__(self, model: PreTrainedModel, *, base_rows: int) -> None:
        c = model.config
        self.model = model
        self.heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.eps = c.rms_norm_eps
        self.base_rows = base_rows
        decoder = model.get_decoder()
        self.layers = [_Layer(block) for block in decoder.layers]
        self.final_norm = decoder.norm.weight
        self.compressed: str = "float32"  # the precision the copies below are in
        self.head_copy: Weights | None = None  # the base rows of the output layer, made with the layers' copies
        self.state: torch.Tensor | None = None  # [H], kept by forward(state_after=...)
        # The model's own rotary module, so cos/sin are bit-identical to its forward.
        positions = torch.arange(c.max_position_embeddings)[None]
        cos, sin = decoder.rotary_emb(torch.zeros(1, dtype=torch.float32), positions)
        self.cos, self.sin = cos[0], sin[0]  # [max_positions, head_dim]

    def new_cache(self, capacity: int) -> KVCache:
        return KVCache(len(self.layers), self.kv_heads, self.head_dim, capacity, torch.float32)

    @torch.inference_mode()
    def forward(self, cache: KVCache, *, ids: torch.Tensor | None = None, embeds: torch.Tensor | None = None,
                weights: str = "float32", attention_mass: torch.Tensor | None = None, logits: bool = True,
                state_after: int | None = None) -> torch.Tensor | None:
        """Feed T new positions after `cache.length`; they join the cache.

        ids: [T] model token ids, or embeds: [T, H] input embeddings (a soft prefix).
        weights: the precision a one-position step reads the matrices in (`DECODE_WEIGHTS`);
            copies are made on the first such step and kept.
        attention_mass: [>= length + T] float32; with T == 1, the new position's attention
            weights, summed over layers and heads, are added to its first length + 1 entries.
        logits: False skips the output layer (a position fed only for its attention).
        state_after: keep the last new position's hidden state after this many layers in
            `self.state` ([H]; as transformers' hidden_states[state_after], the last normed).
        Returns: [V] float32 logits of the last new position (base and grown rows), or None.
        """
        embedding = self.model.get_input_embeddings().weight
        x = F.embedding(ids, embedding) if embeds is None else embeds.float()
        steps = x.shape[0]
        start, end = cache.length, cache.length + steps
        if end > self.cos.shape[0]:
            raise ValueError(f"{end} positions exceed the model's {self.cos.shape[0]}")
        cache.reserve(end)
        cos, sin = self.cos[start:end], self.sin[start:end]
        low = steps == 1 and weights != "float32"
        if low and self.compressed != weights:
            self._compress(weights)
        if state_after == 0:
            self.state = x[-1].clone()
        mass = attention_mass[:end].clone() if low and attention_mass is not None else None
        for index, layer in enumerate(self.layers):
            h = self._attention(layer, index, _rms(x, layer.in_norm, self.eps), cache, start, cos, sin, low, attention_mass)
            x = x + h
            gate, up = self._matmul(_rms(x, layer.post_norm, self.eps), layer, "gate_up", low).chunk(2, dim=-1)
            x = x + self._matmul(F.silu(gate) * up, layer, "down", low)
            if state_after == index + 1:
                self.state = x[-1].clone() if state_after < len(self.layers) else _rms(x[-1], self.final_norm, self.eps)
        if low and not bool(torch.isfinite(x).all()):  # a float16 product overflowed: this step again in float32
            if mass is not None:
                attention_mass[:end] = mass
            return self.forward(cache, ids=ids, embeds=embeds, attention_mass=attention_mass, logits=logits, state_after=state_after)
        cache.length = end
        new_ids = ids.tolist() if embeds is None else [-1] * steps
        cache.ids.extend(new_ids)
        cache.rows.update({i: embedding[i].clone() for i in new_ids if i >= self.base_rows and i not in cache.rows})
        return self._logits(_rms(x[-1:], self.final_norm, self.eps), low)[0] if logits else None

    def _compress(self, weights: str) -> None:
        if weights not in DECODE_WEIGHTS:
            raise ValueError(f"decode weights must be one of {DECODE_WEIGHTS}, not {weights!r}")
        for layer in self.layers:
            layer.compress(weights)
        self.head_copy = _compress(self.model.get_output_embeddings().weight[: self.base_rows], weights)
        self.compressed = weights

    def _attention(self, layer: _Layer, index: int, x: torch.Tensor, cache: KVCache, start: int, cos: torch.Tensor,
                   sin: torch.Tensor, low: bool, attention_mass: torch.Tensor | None) -> torch.Tensor:
        """Causal grouped-query attention of x ([T, H]) over the cache and itself; returns [T, H]."""
        steps, d = x.shape[0], self.head_dim
        q, k, v = self._matmul(x, layer, "qkv", low).split([self.heads * d, self.kv_heads * d, self.kv_heads * d], dim=-1)
        q = _rotate(q.view(steps, self.heads, d).transpose(0, 1), cos, sin)  # [heads, T, d]
        k = _rotate(k.view(steps, self.kv_heads, d).transpose(0, 1), cos, sin)
        end = start + steps
        cache.keys[index, :, start:end] = k
        cache.values[index, :, start:end] = v.view(steps, self.kv_heads, d).transpose(0, 1)
        keys, values = cache.keys[index, :, :end], cache.values[index, :, :end]  # [kv_heads, S, d]
        if steps == 1:  # explicit, so the weights can be kept; a group of query heads shares one kv head
            group = q.view(self.kv_heads, self.heads // self.kv_heads, d)
            weights = torch.softmax((group @ keys.transpose(1, 2)) / math.sqrt(d), dim=-1)  # [kv_heads, G, S]
            if attention_mass is not None:
                attention_mass[:end] += weights.sum((0, 1))
            out = (weights @ values).reshape(1, self.heads * d)
        else:
            mask = torch.ones(steps, end, dtype=torch.bool).tril(diagonal=start)
            out = F.scaled_dot_product_attention(q[None], keys[None], values[None], attn_mask=mask, enable_gqa=True)
            out = out[0].transpose(0, 1).reshape(steps, self.heads * d)
        return self._matmul(out, layer, "o", low)

    def _matmul(self, x: torch.Tensor, layer: _Layer, name: str, low: bool) -> torch.Tensor:
        return _linear(x, layer.copies[name]) if low else F.linear(x, getattr(layer, name))

    def _logits(self, x: torch.Tensor, low: bool) -> torch.Tensor:
        """x: [1, H] -> [1, V] over the output layer's current rows."""
        head = self.model.get_output_embeddings().weight
        if not low:
            return F.linear(x, head)
        return torch.cat([_linear(x, self.head_copy), F.linear(x, head[self.base_rows:])], dim=-1)


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding. x: [heads, T, d]; cos, sin: [T, d]."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

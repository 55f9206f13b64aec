"""The controller's adapter: LoRA weights that teach the frozen LM to answer from memory notes.

The weights are trained by train_meta.py (stage "adapter", on training/adapter_data.py's
examples). Only decoder layers from `from_layer` on are adapted, so the hidden states
the memory interface reads (layer `interface.feature_layer`) stay as it was trained on.
At load the LoRA weights are merged into the model: chat pays nothing for them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel

_PREFIX = "base_model.model."  # how peft's saved state names the wrapped model's modules


def apply_adapter(model: PreTrainedModel, path: str | Path) -> PreTrainedModel:
    """The model with the adapter at `path` merged into its weights (a plain model again).

    Each adapted linear layer gets W += (B @ A) * lora_alpha / r, peft's own merge,
    without building a peft model around the 135M one (peft's import and merge were most
    of a warm start).
    """
    data = torch.load(path, weights_only=True)
    config, state = data["config"], data["state_dict"]
    if config.get("use_rslora") or config.get("use_dora"):
        raise ValueError("rsLoRA and DoRA adapters are not supported")
    scale = config["lora_alpha"] / config["r"]
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if not key.startswith(_PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise ValueError(f"unexpected tensor {key}")
        name, part = key[len(_PREFIX):].rsplit(".lora_", 1)
        factors.setdefault(name, {})[part[0]] = value.float()
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, f in factors.items():
            if name not in modules or set(f) != {"A", "B"}:
                raise ValueError(f"no linear layer {name} to merge into, or a factor missing")
            weight = modules[name].weight
            weight += ((f["B"] @ f["A"]) * scale).to(weight.dtype)
    return model


def adapter_config(*, rank: int, alpha: float, dropout: float, targets: str, from_layer: int, layers: int) -> dict:
    """LoraConfig keyword arguments, as stored with the weights."""
    return {
        "r": rank, "lora_alpha": alpha, "lora_dropout": dropout, "target_modules": [t.strip() for t in targets.split(",")],
        "layers_to_transform": list(range(from_layer, layers)), "bias": "none",
    }

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


def apply_adapter(model: PreTrainedModel, path: str | Path) -> PreTrainedModel:
    """The model with the adapter at `path` merged into its weights (a plain model again)."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    data = torch.load(path, weights_only=True)
    config = data["config"]
    peft_model = get_peft_model(model, LoraConfig(**config))
    set_peft_model_state_dict(peft_model, {k: v.float() for k, v in data["state_dict"].items()})
    return peft_model.merge_and_unload()


def adapter_config(*, rank: int, alpha: float, dropout: float, targets: str, from_layer: int, layers: int) -> dict:
    """LoraConfig keyword arguments, as stored with the weights."""
    return {
        "r": rank, "lora_alpha": alpha, "lora_dropout": dropout, "target_modules": [t.strip() for t in targets.split(",")],
        "layers_to_transform": list(range(from_layer, layers)), "bias": "none",
    }

"""Whether the notes answer a question: a logistic probe on the controller's state at the prompt's last position.

The adapter says "not told" only when that reply wins the argmax, and on prompts whose
note is about the asked person but not the asked attribute it rarely does. What the
model has read is still in its residual stream: one linear read of it at the last prompt
position (the assistant's cue), trained on broad generated prompts (`train_meta.py`,
stage "answerable"), gives the probability that no note answers. The pass that prefills
the prompt computes that state anyway, so the probe costs one dot product a turn.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .loading import ModelLoadError


def file_digest(path: str | Path) -> str:
    """Short sha256 of a file (the adapter a probe was trained on), "" for no file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else ""


@dataclass
class AnswerProbe:
    """P(no note answers) = sigmoid(weight . (h - mean) / scale + bias), h the state after `layer` decoder layers.

    layer: how many decoder layers the state has been through (transformers' hidden_states index).
    mean, scale, weight: [H] float32.
    threshold: above it the reply is "not told" (chosen on validation prompts when trained).
    model: the model tag (chatbot.loading.model_tag) and adapter: the adapter file's digest it was trained on.
    """

    layer: int
    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: float
    threshold: float
    model: str
    adapter: str

    def not_answered(self, state: torch.Tensor) -> float:
        """state: [H] residual stream after `layer` layers at the prompt's last position -> P(no note answers)."""
        z = (state.float() - self.mean) / self.scale
        return float(torch.sigmoid(z @ self.weight + self.bias))

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: getattr(self, k) for k in self.__dataclass_fields__}, path)

    @classmethod
    def load(cls, path: str | Path, *, model: str, adapter: str, hidden_size: int) -> AnswerProbe:
        """The probe in `path`, checked against the model tag and adapter digest it must have been trained on;
        raises ModelLoadError with a fix otherwise."""
        if not Path(path).is_file():
            raise ModelLoadError(f"model.not_told_probe {path} does not exist; train it (train_meta.py, stage answerable) or set it to \"\"")
        try:
            probe = cls(**torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:  # a damaged or foreign file: pickle, zip and key errors alike
            raise ModelLoadError(f"model.not_told_probe {path} cannot be read ({exc}); retrain it or set it to \"\"") from None
        if probe.model != model or probe.adapter != adapter or probe.weight.shape != (hidden_size,):
            raise ModelLoadError(f"model.not_told_probe {path} was trained for model {probe.model} with adapter "
                                 f"{probe.adapter or 'none'}, not {model} with {adapter or 'none'}; retrain it or set it to \"\"")
        return probe

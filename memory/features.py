"""Hidden states of sentences at one layer of a frozen controller: what the memory interface reads."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


class TextEncoder(Protocol):
    """What feature extraction needs of a language model (chatbot.Controller is one)."""

    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    lock: AbstractContextManager

    def embed(self, input_ids: torch.LongTensor) -> torch.Tensor: ...


class _Reached(Exception):
    """Raised from a forward hook to stop the forward pass at the wanted layer."""

    def __init__(self, hidden: torch.Tensor) -> None:
        self.hidden = hidden


@torch.inference_mode()
def hidden_states(controller: TextEncoder, texts: list[str], layer: int) -> list[torch.Tensor]:
    """Hidden states of each text at `layer` (0 = embeddings; as `Controller.encode`).

    Returns: one [T_i, Hc] float32 tensor per text (its own length, no padding).
    """
    # One text at a time, padded here: the tokenizer is shared across threads, and its
    # padding setting is state that another thread's call would switch off mid-batch.
    encoded = [controller.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width, pad = max((len(e) for e in encoded), default=0), controller.tokenizer.pad_token_id or 0
    ids = torch.tensor([e + [pad] * (width - len(e)) for e in encoded], dtype=torch.long)
    mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in encoded], dtype=torch.long)
    n_layers = controller.model.config.num_hidden_layers
    with controller.lock:
        if layer == 0:
            hidden = controller.embed(ids)
        elif 0 < layer < n_layers:
            # Later layers cannot change this one's output: stop there (a 5x saving at layer 6 of 30).
            def stop(module, args, output):
                raise _Reached(output[0] if isinstance(output, tuple) else output)

            handle = controller.model.model.layers[layer - 1].register_forward_hook(stop)
            try:
                controller.model(input_ids=ids, attention_mask=mask)
                raise RuntimeError("the forward pass did not reach the hooked layer")
            except _Reached as reached:
                hidden = reached.hidden
            finally:
                handle.remove()
        else:
            out = controller.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            hidden = out.hidden_states[layer]
    # right padding: a causal model's states of real tokens ignore the pad after them
    return [h[m.bool()].float() for h, m in zip(hidden, mask)]

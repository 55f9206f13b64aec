"""What one reply's generation did (`Generation`, the report a turn keeps) and how a stream is stopped early."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria


@dataclass
class Generation:
    """What one `generate` call did, filled in when its stream ends."""

    prompt_tokens: int = 0  # as the model read them: grown tokens merged, soft prefix included
    reused_tokens: int = 0  # of those, how many the user's cache from their last turn already held
    new_tokens: int = 0
    # per requested span: the attention mass the reply's tokens put on it, averaged over
    # layers, heads and reply tokens (what the paper's lifespan reward is made of)
    span_attention: list[float] = field(default_factory=list)
    seconds: float = 0.0  # prefill and decoding
    first_token_seconds: float = 0.0  # from the call until the first new token is known
    attention_seconds: float = 0.0  # transformers' path only: the extra pass that measures span attention
    path: str = ""  # "lean" or "transformers"
    not_told_probability: float | None = None  # the not-told probe's P(no note answers the question); None: not scored
    not_told: bool = False  # the reply is the adapter's "not told", chosen by that probability


class Cancelled(StoppingCriteria):
    """Stops generation when the consumer of a stream goes away."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> bool:
        return self.event.is_set()


"""Settings of the elastic vocabulary: when words become tokens, how strength moves, when tokens go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class VocabConfig:
    """Every rate and threshold of the elastic vocabulary (a turn = one observed message of a user).

    Strengths, counts, decay, pruning and `capacity` are per user (each user's own tokens and
    turns, vocab/users.py); `max_tokens` bounds the rows of all users together.

    Off: the whole vocabulary by `enabled: false`; span growth and fitting at 0; the teaching pattern at "".
    """

    enabled: bool = True  # off: the base tokenizer and matrix are used unchanged (the ablation)
    grow_after: float = 1.8  # a word grows once its count of sightings (decayed per turn) reaches this: 1.8 = twice within ~20 turns
    span_grow_after: float = 2.7  # two adjacent added words seen together this often (decayed) become one token; 0 = off
    min_pieces: int = 2  # a word must currently take at least this many tokens to be worth a new one
    teaching_pattern: str = r"^\s*(remember|note|learn)\b"  # case-insensitive regex; a match grows the turn's words at once; "" = off
    # row a new token starts from: its "first" piece's (read best, bench/vocab_growth.py), lifted 5% so it never ties with it
    # (vocab/rows.py), or the "mean" of its pieces'
    init: Literal["first", "mean"] = "first"
    fit_steps: int = 5  # distillation steps on the new rows so the model reads and emits a new token as its pieces; 0 = start row only
    fit_lr: float = 0.01  # Adam learning rate of those steps; higher rates overfit the one message
    fit_prefix: str = "<|endoftext|>"  # put before the message when fitting: SmolLM2's document separator, so the text reads as in pretraining
    use_gain: float = 1.0  # strength added each time the user's text uses a token (and each token it is built from)
    grow_strength: float = 2.0  # strength of a token when it is grown
    decay: float = 0.99  # a user's strengths and candidate counts are multiplied by this every turn of theirs
    prune_below: float = 0.25  # a user's added tokens weaker than this leave their set
    capacity: int = 512  # most added tokens one user holds at once; their weakest beyond it leave their set
    max_tokens: int = 8192  # most added tokens (rows) of all users together; beyond it no new word grows (none is pruned for it)
    max_candidates: int = 4096  # most words one user has counted towards growth at once; the faintest are forgotten

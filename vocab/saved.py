"""The elastic vocabulary's saved state as storage/vocab.py reads it back, and which model its rows fit."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from .lexicon import AddedToken
from .rows import embedding_matrix, initial_rows
from .users import UserVocab

log = logging.getLogger(__name__)


class VocabError(RuntimeError):
    """The stored vocabulary does not fit this tokenizer; the message says what to do."""


@dataclass
class SavedVocab:
    """A vocabulary as storage/vocab.py reads it back."""

    base_size: int | None  # the base ids it was grown over; None when nothing was saved
    step: int  # messages observed, all users
    fingerprint: str | None  # the model its rows were taken from (`model_fingerprint`)
    tokens: list[AddedToken]  # in id order
    rows: list[np.ndarray | None]  # per token: its [H] float32 embedding row; None when saved without a model
    users: dict[str, UserVocab]
    version: float  # the save it came from (Changes.version)


def model_fingerprint(model: PreTrainedModel, base_size: int) -> str:
    """A short hash of some base embedding rows: saved rows only fit the model they came from."""
    matrix = embedding_matrix(model)
    index = torch.linspace(0, base_size - 1, 16).long()
    sample = matrix.detach().index_select(0, index).float().contiguous().numpy()
    return hashlib.sha256(sample.tobytes() + str(tuple(matrix.shape[1:])).encode()).hexdigest()[:16]


def added_rows(model: PreTrainedModel, base_size: int, fingerprint: str, saved: SavedVocab, init: str) -> tuple[torch.Tensor | None, bool]:
    """[N, H] rows of the saved tokens for `model`: the saved rows when they were taken from
    it, else rebuilt from the tokens' pieces with rule `init` (not fitted).
    Returns the rows (None without tokens) and whether they were rebuilt."""
    base = embedding_matrix(model)[:base_size].detach()
    fits = saved.fingerprint == fingerprint and all(r is not None and r.shape == (base.shape[1],) for r in saved.rows)
    if fits and saved.rows:
        return torch.from_numpy(np.stack(saved.rows)), False
    if not saved.tokens:
        return None, False
    log.warning("saved vocabulary rows belong to another model; rebuilding %d rows from their pieces", len(saved.tokens))
    work = torch.cat([base.float(), torch.zeros(len(saved.tokens), base.shape[1])])
    for t in saved.tokens:  # in id order, so a token's pieces already have rows
        work[t.id] = initial_rows(work, [t.pieces], init)[0]
    return work[base_size:], True

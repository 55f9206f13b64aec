"""The model side of the elastic vocabulary: rows of the embedding and output matrices.

Rows are appended when tokens grow and selected (compactly) when tokens are pruned.
Each resize installs a new `nn.Parameter` shared by the input embedding and, when the
model ties them, the output layer; an optimizer built before a resize still holds the
old tensor, so training code must build its optimizer after the vocabulary changes.

A new token's row starts as its first piece's row, then a few distillation steps
(fit_rows) make the model read it as the whole word, and emit it where the word is
copied. Measured on SmolLM2-135M (bench/vocab_growth.py, 1,500 messages, held-out
perplexity per base token vs the base vocabulary): mean of the pieces +29%, first piece
+5.5%, first piece + 5 fit steps +0.5%.

With tied embeddings a row equal to its first piece's gives both one logit everywhere:
greedy decoding picks the piece (the lower id) where a reply copies the word, and the
model, which read the whole word as one token, goes on as if it had written it ("K plays
the oboe" for " Kwabena plays the oboe"). So a "first" row starts as the first piece's
times 1 + FIRST_LIFT, and the fit's targets put the token above its first piece where the
word surely goes on and below it elsewhere: neither the lift nor the fit alone keeps
every taught name above its piece where a reply copies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

INIT_RULES = ("mean", "first")
# A "first" row is the piece's row scaled by 1 + FIRST_LIFT: its logit h @ row then exceeds
# the piece's exactly where the piece's is positive (where the model would start the word)
# and falls below it elsewhere, instead of tying with it.
FIRST_LIFT = 0.05


def embedding_matrix(model: PreTrainedModel) -> torch.Tensor:
    """The input embedding weight: [V, H]."""
    return model.get_input_embeddings().weight


def is_tied(model: PreTrainedModel) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


@torch.no_grad()
def resize_rows(model: PreTrainedModel, *, keep: torch.Tensor | None = None, append: torch.Tensor | None = None) -> None:
    """Select rows `keep` ([K] long, in the new order), then append rows `append` ([N, H]).

    Applies to the input embedding and the output layer alike (once when tied), and
    keeps `config.vocab_size` equal to the new number of rows.
    """
    emb = model.get_input_embeddings()
    out = model.get_output_embeddings()
    tied = is_tied(model)

    def resized(weight: torch.Tensor) -> nn.Parameter:
        # Runs outside inference mode so the new tensor can take part in autograd later.
        with torch.inference_mode(False):
            w = weight.detach()
            if keep is None and append is None:
                w = w.clone()  # the new Parameter must never share storage with the old one
            if keep is not None:
                w = w.index_select(0, keep.to(w.device))
            if append is not None:
                w = torch.cat([w, append.detach().to(device=w.device, dtype=w.dtype)])
            return nn.Parameter(w, requires_grad=weight.requires_grad)

    weight = resized(emb.weight)
    emb.weight = weight
    emb.num_embeddings = weight.shape[0]
    if out is not None:
        out.weight = weight if tied else resized(out.weight)
        out.out_features = out.weight.shape[0]
    model.config.vocab_size = weight.shape[0]
    if hasattr(model, "vocab_size"):
        model.vocab_size = weight.shape[0]


def initial_rows(matrix: torch.Tensor, pieces: Sequence[Sequence[int]], rule: str) -> torch.Tensor:
    """Starting rows of new tokens from the rows of their pieces.

    Args:
        matrix: [V, H] current embedding matrix (pieces may be earlier added tokens).
        pieces: for each new token, the ids it is built from.
        rule: "mean" of the pieces' rows, or the "first" piece's row times 1 + FIRST_LIFT.
    Returns: [N, H].
    """
    if rule not in INIT_RULES:
        raise ValueError(f"vocab init rule {rule!r} must be one of {', '.join(INIT_RULES)}")
    rows = []
    for p in pieces:
        index = torch.as_tensor(list(p), device=matrix.device)
        rows.append(matrix.index_select(0, index).mean(0) if rule == "mean" else matrix[index[0]] * (1 + FIRST_LIFT))
    return torch.stack(rows).detach().clone()


@dataclass(frozen=True)
class FitText:
    """One text for fit_rows, in base ids and in grown ids.

    Both start with the same prefix (a document separator), so every token has a context.
    `widths[j]` is how many base ids grown id j stands for (1 for a base id).
    """

    base_ids: list[int]
    grown_ids: list[int]
    widths: list[int]


def fit_rows(model: PreTrainedModel, row_ids: Sequence[int], texts: Sequence[FitText], *, base_size: int, steps: int, lr: float) -> float:
    """Fit rows `row_ids` of the tied embedding matrix so the model reads and emits new tokens as their pieces.

    Distillation on text that uses the new tokens, towards the same model reading the
    text in base ids (the teacher). Where the next token is a base token, the student's
    (grown ids) next-token distribution over base ids should match the teacher's. Where
    the next token is a new one, the target is the teacher's distribution with the
    chance of the whole word (its pieces' chances multiplied) moved from the first piece
    to the new token: so the new token outscores its first piece where the teacher is
    sure the word goes on, and falls below it where it is not, instead of tying with it
    (a row that starts as the first piece's gives both one logit). Added tokens count in
    the student's softmax, so mass they take elsewhere is penalised. Every other weight
    is frozen and only the given rows change. Logits are hidden @ matrix^T (llama
    style). Returns the mean KL per position at the last step.

    Args:
        row_ids: ids of the rows to fit (the new tokens).
        texts: FitText samples; grown_ids [T_g], base_ids [T_b].
        base_size: number of base ids (the teacher's columns).
    """
    if not is_tied(model):
        raise ValueError("fit_rows needs a model whose input and output embeddings are tied")
    weight = model.get_input_embeddings().weight
    device = weight.device
    index = torch.as_tensor(list(row_ids), device=device)
    fitted = set(index.tolist())
    decoder = model.get_decoder()
    samples = []
    with torch.no_grad():
        for text in texts:
            positions, columns, targets, base_pos = [], [], [], 0
            logp = model(input_ids=torch.as_tensor([text.base_ids], device=device)).logits[0, :, :base_size].float().log_softmax(-1)
            for j in range(1, len(text.grown_ids)):
                base_pos += text.widths[j - 1]  # base ids read before grown id j
                token = text.grown_ids[j]
                if token < base_size:
                    positions.append(j - 1)
                    columns.append(token)  # any column: its target's chance is 0
                    targets.append(torch.cat([logp[base_pos - 1], logp.new_full((1,), -torch.inf)]))
                elif token in fitted:
                    positions.append(j - 1)
                    columns.append(token)
                    targets.append(_word_target(logp, base_pos - 1, text.base_ids[base_pos : base_pos + text.widths[j]]))
            if positions:
                samples.append((torch.as_tensor(text.grown_ids, device=device), torch.as_tensor(positions, device=device),
                                torch.as_tensor(columns, device=device), torch.stack(targets)))
    if not samples or steps <= 0:
        return float("nan")
    was_training = model.training
    model.eval()
    with torch.inference_mode(False), torch.enable_grad():
        frozen = weight.detach()
        rows = frozen.index_select(0, index).clone().requires_grad_(True)
        optim = torch.optim.Adam([rows], lr=lr)
        for _ in range(steps):
            optim.zero_grad()
            total, count = 0.0, 0
            for ids, positions, columns, target in samples:
                # The matrix with `rows` in place, without copying it: swap the new rows
                # into the looked-up embeddings and into the logits' columns.
                slot = (ids.unsqueeze(1) == index).float()  # [T, N]: which new row each token is
                embeds = frozen[ids] * (1 - slot.sum(1, keepdim=True)) + slot @ rows
                hidden = decoder(inputs_embeds=embeds.unsqueeze(0)).last_hidden_state[0, positions]
                logits = (hidden @ frozen.T).index_copy(1, index, hidden @ rows.T)
                logp = logits.float().log_softmax(-1)
                student = torch.cat([logp[:, :base_size], logp.gather(1, columns[:, None])], 1)  # [P, base + 1]
                p = target.exp()  # KL(target || student); 0 where the target's chance is 0
                total = total + (torch.xlogy(p, p) - p * student).sum()
                count += len(positions)
            loss = total / count
            loss.backward()
            optim.step()
    with torch.no_grad():
        weight.index_copy_(0, index, rows.detach().to(weight.dtype))
    model.train(was_training)
    return loss.item()


def _word_target(logp: torch.Tensor, at: int, expansion: Sequence[int]) -> torch.Tensor:
    """[base + 1] log-probabilities: the teacher's next-token distribution at base position `at`
    ([T, base] `logp`), with the whole word's chance moved from its first piece to one more column."""
    word = sum(logp[at + k, piece] for k, piece in enumerate(expansion))  # log P(word) = log P(first) + log P(rest | first)
    target = logp[at].clone()
    first = expansion[0]
    rest = (word - target[first]).clamp(max=-1e-6)
    target[first] = target[first] + torch.log1p(-rest.exp())  # P(first) - P(word)
    return torch.cat([target, word.reshape(1)])

"""The memory interface and the meta-trained memory model.

`MemoryInterface` is the small trainable network between the frozen controller
and the neural memory. For every sentence (a bAbI line, a chat message) it reads
the controller's hidden states and emits:
  * a write key and a target value (the value lives in the controller's embedding
    space: a pointer over the sentence's own token embeddings, plus an optional
    learned vector), and a write rate beta per memory head;
  * a read key (and more for multi-hop reads).
A GRU state carries context from sentence to sentence ("he" in "then he went
...") and across turns in chat.

`MemoryModel` runs the interface and the memory over a batch of episodes step by
step (the same `step` serves one user at chat time), decodes reads against answer
embeddings, and computes the switchable meta-training losses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import InterfaceConfig, MetaLossConfig, NeuralMemoryConfig

from .neural import NeuralMemory

PAD, STATEMENT, QUESTION = 0, 1, 2


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis ignoring mask == False; all-False rows give zeros."""
    logits = logits.masked_fill(~mask, float("-inf"))
    return torch.nan_to_num(torch.softmax(logits, dim=-1), nan=0.0)


class MemoryInterface(nn.Module):
    """Controller hidden states -> memory keys, values, write rates; recurrent.

    Args:
        cfg: interface switches and width.
        feature_dim: width of the controller hidden states it reads (Hc).
        value_dim: width of the controller's token embeddings (H).
        key_dim: memory key width.
        heads: memory heads (one beta each).
    """

    def __init__(self, cfg: InterfaceConfig, feature_dim: int, value_dim: int, key_dim: int, heads: int) -> None:
        super().__init__()
        if not (cfg.value_copy or cfg.value_residual):
            raise ValueError("interface: value_copy or value_residual must be on, or values are empty")
        if cfg.read_hops < 1:
            raise ValueError("interface.read_hops must be at least 1")
        self.cfg = cfg
        d = cfg.model_dim
        self.norm = nn.LayerNorm(feature_dim)
        self.tok = nn.Linear(feature_dim, d)
        self.tok_emb = nn.Linear(value_dim, d, bias=False) if cfg.token_embeddings else None
        self.tok_state = nn.Linear(d, d, bias=False) if cfg.recurrent else None
        self.gru = nn.GRUCell(d, d) if cfg.recurrent else None
        # per-token logits: write-key, value and read-key attention (and the answer attention)
        self.att = nn.Linear(d, 4 if cfg.answer_attention else 3)
        self.write_key = nn.Linear(2 * d, key_dim)
        self.read_keys = nn.ModuleList(
            nn.Linear(2 * d + (value_dim if hop else 0), key_dim) for hop in range(cfg.read_hops)
        )
        self.value_res = nn.Linear(2 * d, value_dim) if cfg.value_residual else None
        if cfg.learned_beta:
            self.beta = nn.Linear(2 * d, heads)
            nn.init.constant_(self.beta.bias, 2.0)  # writes start nearly full strength
        self.heads = heads

    def encode(self, feats: torch.Tensor, emb: torch.Tensor, mask: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token codes and the new recurrent state.

        Args:
            feats: [B, T, Hc] controller hidden states; emb: [B, T, H] their input embeddings;
            mask: [B, T]; state: [B, d].
        Returns: tokens [B, T, d], new state [B, d] (the sentence summary when not recurrent).
        """
        tok = self.tok(self.norm(feats))
        if self.tok_emb is not None:
            tok = tok + self.tok_emb(emb.to(tok.dtype))
        if self.tok_state is not None:
            tok = tok + self.tok_state(state).unsqueeze(1)
        tok = torch.tanh(tok)
        m = mask.unsqueeze(-1).to(tok.dtype)
        summary = (tok * m).sum(1) / m.sum(1).clamp_min(1.0)
        return tok, (self.gru(summary, state) if self.gru is not None else summary)

    def attention(self, tok: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, T, d] -> [B, 3 or 4, T] attention of write key, value, read key (and answer) over tokens."""
        return _masked_softmax(self.att(tok).transpose(1, 2), mask.unsqueeze(1))

    def write_signals(
        self, tok: torch.Tensor, att: torch.Tensor, emb: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Write key [B, key_dim], value [B, H] and beta [B, heads].

        emb: [B, T, H] input embeddings of the sentence's tokens (what a value copies).
        """
        key_in = torch.einsum("bt,btd->bd", att[:, 0], tok)
        val_in = torch.einsum("bt,btd->bd", att[:, 1], tok)
        k_w = self.write_key(torch.cat([key_in, state], -1))
        v_w = torch.zeros(emb.shape[0], emb.shape[-1], dtype=tok.dtype, device=tok.device)
        if self.cfg.value_copy:
            v_w = v_w + torch.einsum("bt,bth->bh", att[:, 1], emb.to(tok.dtype))
        if self.value_res is not None:
            v_w = v_w + self.value_res(torch.cat([val_in, state], -1))
        if self.cfg.learned_beta:
            beta = torch.sigmoid(self.beta(torch.cat([key_in, state], -1)))
        else:
            beta = torch.full((tok.shape[0], self.heads), self.cfg.fixed_beta, dtype=tok.dtype, device=tok.device)
        return k_w, v_w, beta

    def read_query(self, tok: torch.Tensor, att: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """[B, 2d]: what a question asks for, the input of every read key."""
        return torch.cat([torch.einsum("bt,btd->bd", att[:, 2], tok), state], -1)

    def answer_query(self, tok: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        """[B, d]: what the read is compared with (answer_attention), else [B, 0]."""
        if not self.cfg.answer_attention:
            return tok.new_zeros(tok.shape[0], 0)
        return torch.einsum("bt,btd->bd", att[:, 3], tok)

    def read_key(self, query: torch.Tensor, hop: int, previous: torch.Tensor | None) -> torch.Tensor:
        """Key of read `hop` [B, key_dim]; hops after the first also see the previous read [B, H]."""
        x = query if hop == 0 else torch.cat([query, previous], -1)
        return self.read_keys[hop](x)


@dataclass
class EpisodeBatch:
    """B episodes padded to S steps of at most T tokens.

    feats [B, S, T, Hc]; emb [B, S, T, H]; mask [B, S, T] (real tokens);
    kind [B, S] (PAD, STATEMENT, QUESTION); answer [B, S] (candidate index, -100 if none);
    candidates [C, H] (answer embeddings); vocab [U, H] (embeddings of the batch's tokens);
    tok_u [B, S, T] (each token's row in vocab; padding's row is zero);
    support [B, S, S] (support[b, t, s]: statement s answers question t);
    pointer [B, S, T] (the tokens that spell a teaching statement's value; all False if unknown).
    """

    feats: torch.Tensor
    emb: torch.Tensor
    mask: torch.Tensor
    kind: torch.Tensor
    answer: torch.Tensor
    candidates: torch.Tensor
    vocab: torch.Tensor
    tok_u: torch.Tensor
    support: torch.Tensor
    pointer: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "EpisodeBatch":
        return EpisodeBatch(*(getattr(self, f).to(device, non_blocking=non_blocking) for f in self.__dataclass_fields__))


@dataclass
class StepOutput:
    """What one step did: write signals (statements) and the decoded read (questions)."""

    k_w: torch.Tensor  # [B, key_dim]
    v_w: torch.Tensor  # [B, H]
    beta: torch.Tensor  # [B, heads], zero where nothing was written
    value_att: torch.Tensor  # [B, T] the value's pointer over tokens
    k_r: torch.Tensor  # [B, key_dim] the first read key
    answer: torch.Tensor  # [B, H] vector to decode (read mixed with the question state)


class MemoryModel(nn.Module):
    """Interface + neural memory + answer decoding: the meta-trained model.

    Args:
        memory_cfg, interface_cfg: the two parts' configs.
        feature_dim: controller hidden width at the feature layer (Hc).
        value_dim: controller embedding width (H).
    """

    def __init__(self, memory_cfg: NeuralMemoryConfig, interface_cfg: InterfaceConfig, feature_dim: int, value_dim: int) -> None:
        super().__init__()
        self.memory_cfg, self.interface_cfg = memory_cfg, interface_cfg
        self.interface = MemoryInterface(interface_cfg, feature_dim, value_dim, memory_cfg.key_dim, memory_cfg.heads)
        self.memory = NeuralMemory(memory_cfg, value_dim)
        d = interface_cfg.model_dim
        extra = d if interface_cfg.answer_attention else 0
        self.out = (
            nn.Sequential(nn.Linear(value_dim + 2 * d + extra, 2 * d), nn.GELU(), nn.Linear(2 * d, value_dim))
            if interface_cfg.output_mlp
            else None
        )
        if self.out is None and not memory_cfg.enabled:
            raise ValueError("with neural_memory.enabled false the interface needs output_mlp to answer")
        self.log_scale = nn.Parameter(torch.tensor(10.0).log())  # decoding temperature
        self.log_match_scale = nn.Parameter(torch.tensor(10.0).log())  # temperature of the match loss
        self.value_dim = value_dim

    def reset(self, batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        """Empty memory and a zero recurrent state [B, d] for `batch_size` episodes."""
        self.memory.reset(batch_size)
        return torch.zeros(batch_size, self.interface_cfg.model_dim, device=device or self.log_scale.device)

    def step(
        self, state: torch.Tensor, feats: torch.Tensor, emb: torch.Tensor, mask: torch.Tensor, kind: torch.Tensor
    ) -> tuple[torch.Tensor, StepOutput]:
        """One sentence for each of B episodes: statements are written, questions read.

        Args:
            state: [B, d] recurrent state; feats [B, T, Hc]; emb [B, T, H]; mask [B, T];
            kind: [B] PAD / STATEMENT / QUESTION.
        Returns: the new state [B, d] (unchanged on PAD) and the step's output.
        """
        tok, new_state = self.interface.encode(feats, emb, mask, state)
        att = self.interface.attention(tok, mask)
        k_w, v_w, beta = self.interface.write_signals(tok, att, emb, new_state)
        beta = beta * (kind == STATEMENT).unsqueeze(-1).to(beta.dtype)
        if self.memory_cfg.enabled:
            self.memory.write(k_w, v_w, beta)
        query = self.interface.read_query(tok, att, new_state)
        k_r = self.interface.read_key(query, 0, None)
        read = torch.zeros(feats.shape[0], self.value_dim, dtype=query.dtype, device=query.device)
        if self.memory_cfg.enabled:
            read = self.memory.read(k_r)
            for hop in range(1, self.interface_cfg.read_hops):
                read = self.memory.read(self.interface.read_key(query, hop, read))
        if self.out is not None:
            answer = read + self.out(torch.cat([read, query, self.interface.answer_query(tok, att)], -1))
        else:
            answer = read
        keep = (kind != PAD).unsqueeze(-1)
        return torch.where(keep, new_state, state), StepOutput(k_w, v_w, beta, att[:, 1], k_r, answer)

    def key_similarity(self, k_r: torch.Tensor, k_w: torch.Tensor) -> torch.Tensor:
        """Scaled cosine of read keys [..., N, D] with write keys [..., M, D], heads weighted
        equally as the memory sees them -> [..., N, M]."""
        return self.log_match_scale.exp() * unit_keys(k_r, self.memory_cfg.heads) @ unit_keys(k_w, self.memory_cfg.heads).transpose(-1, -2)

    def scores(self, answer: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Decode: scaled cosine of answer vectors [N, H] with candidate embeddings [C, H] -> [N, C]."""
        if self.interface_cfg.center_decoding:
            center = candidates.mean(0)
            answer, candidates = answer - center, candidates - center
        return self.log_scale.exp() * F.normalize(answer, dim=-1) @ F.normalize(candidates, dim=-1).T

    def forward(self, batch: EpisodeBatch, losses: MetaLossConfig) -> dict[str, torch.Tensor]:
        """Run B episodes; returns the weighted `loss`, each enabled term, and the
        questions' `logits` [Nq, C] with their `targets` [Nq] and `positions` [Nq, 2]."""
        b, s = batch.kind.shape
        state = self.reset(b, batch.feats.device)
        answers, meta, recall, keys, write_keys, read_keys, pointer = [], [], [], [], [], [], []
        for t in range(s):
            kind = batch.kind[:, t]
            if not (kind != PAD).any():
                break
            state, out = self.step(state, batch.feats[:, t], batch.emb[:, t], batch.mask[:, t], kind)
            answers.append(out.answer)
            if losses.match:
                write_keys.append(out.k_w)
                read_keys.append(out.k_r)
            written = kind == STATEMENT
            if not written.any():
                continue
            if losses.pointer:
                spelled = batch.pointer[:, t] & written.unsqueeze(-1)  # [B, T]
                taught = spelled.any(-1)
                if taught.any():
                    mass = (out.value_att * spelled).sum(-1)[taught]
                    pointer.append(-torch.log(mass.clamp_min(1e-6)))
            if (losses.meta or losses.recall) and self.memory_cfg.enabled:
                back = self.memory.read(out.k_w)[written]
                if losses.meta:
                    target = out.v_w[written].detach()
                    meta.append((back - target).pow(2).sum(-1) / target.pow(2).sum(-1).clamp_min(1e-6))
                if losses.recall and self.interface_cfg.value_copy:
                    dist = torch.zeros(b, batch.vocab.shape[0], dtype=back.dtype, device=back.device)
                    dist.scatter_add_(1, batch.tok_u[:, t], out.value_att.to(back.dtype))
                    logp = torch.log_softmax(self.scores(back, batch.vocab), -1)
                    recall.append(-(dist[written].detach() * logp).sum(-1))
            if losses.vicreg:
                keys.append(out.k_w[written])
        ask = batch.kind[:, : len(answers)] == QUESTION
        stacked = torch.stack(answers, 1)  # [B, S', H]
        logits = self.scores(stacked[ask], batch.candidates)
        targets = batch.answer[:, : len(answers)][ask]
        result = {"logits": logits, "targets": targets, "positions": ask.nonzero()}
        total = logits.new_zeros(())
        if losses.answer:
            result["answer"] = F.cross_entropy(logits, targets)
            total = total + losses.answer * result["answer"]
        if meta:
            result["meta"] = torch.cat(meta).mean()
            total = total + losses.meta * result["meta"]
        if recall:
            result["recall"] = torch.cat(recall).mean()
            total = total + losses.recall * result["recall"]
        if pointer:
            result["pointer"] = torch.cat(pointer).mean()
            total = total + losses.pointer * result["pointer"]
        if keys:
            result["vicreg"] = vicreg(torch.cat(keys), self.memory_cfg.heads)
            total = total + losses.vicreg * result["vicreg"]
        if losses.match:
            match = self.match_loss(torch.stack(read_keys, 1), torch.stack(write_keys, 1), batch, len(answers))
            if match is not None:
                result["match"] = match
                total = total + losses.match * match
        result["loss"] = total
        return result

    def match_loss(self, k_r: torch.Tensor, k_w: torch.Tensor, batch: EpisodeBatch, steps: int) -> torch.Tensor | None:
        """-log of the softmax mass a question's read key puts on its supporting statements,
        among the episode's earlier statements (InfoNCE with several positives).

        k_r, k_w: [B, S', key_dim] read and write keys of every step.
        Returns None when no question of the batch has a support.
        """
        support = batch.support[:, :steps, :steps]
        asked = (batch.kind[:, :steps] == QUESTION) & support.any(-1)  # [B, S']
        if not asked.any():
            return None
        sim = self.key_similarity(k_r, k_w)  # [B, S', S']
        earlier = torch.ones(steps, steps, dtype=torch.bool, device=sim.device).tril(-1)
        allowed = earlier & (batch.kind[:, None, :steps] == STATEMENT)
        logits = sim.masked_fill(~allowed, float("-inf"))
        positive = logits.masked_fill(~support, float("-inf"))
        loss = torch.logsumexp(logits, -1) - torch.logsumexp(positive, -1)
        return loss[asked].mean()


def unit_keys(k: torch.Tensor, heads: int) -> torch.Tensor:
    """Keys as the memory reads them: unit length per head, then scaled so the whole key
    has unit length. [..., D] -> [..., D]."""
    shape = k.shape
    return (F.normalize(k.reshape(*shape[:-1], heads, -1), dim=-1) / heads**0.5).reshape(shape)


def vicreg(keys: torch.Tensor, heads: int) -> torch.Tensor:
    """VICReg variance + covariance of keys [N, D] as the memory sees them (unit length
    per head, rescaled so that spread-out keys have unit variance per dimension)."""
    n, dim = keys.shape
    if n < 2:
        return keys.new_zeros(())
    k = F.normalize(keys.view(n, heads, -1), dim=-1).view(n, dim) * (dim / heads) ** 0.5
    k = k - k.mean(0)
    variance = F.relu(1.0 - (k.var(0) + 1e-4).sqrt()).mean()
    cov = (k.T @ k) / (n - 1)
    off = cov - torch.diag(torch.diag(cov))
    return variance + off.pow(2).sum() / dim


def save_checkpoint(path: str | Path, model: MemoryModel, *, candidates: list[str], feature_layer: int, cache_tag: str, record: dict) -> None:
    """Write the trained slow weights with everything needed to rebuild and use them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "memory": dataclasses.asdict(model.memory_cfg),
            "interface": dataclasses.asdict(model.interface_cfg),
            "feature_dim": model.interface.norm.normalized_shape[0],
            "value_dim": model.value_dim,
            "feature_layer": feature_layer,
            "cache_tag": cache_tag,
            "candidates": candidates,
            "record": record,
        },
        path,
    )


def load_checkpoint(path: str | Path) -> tuple[MemoryModel, dict]:
    """Rebuild a `MemoryModel` from `save_checkpoint`'s file; returns it (eval mode) and the file's metadata."""
    data = torch.load(path, weights_only=True)
    memory_cfg = NeuralMemoryConfig(**data["memory"])
    memory_cfg.checkpoint = str(path)
    model = MemoryModel(memory_cfg, InterfaceConfig(**data["interface"]), data["feature_dim"], data["value_dim"])
    model.load_state_dict(data["state_dict"])
    return model.eval(), {k: v for k, v in data.items() if k != "state_dict"}

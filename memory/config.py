"""Settings of the memory: the neural memory, its interface and the meta-training losses.

Plain dataclasses with a one-line comment per option; chatbot/config.py loads them
from YAML with every key checked. A part is off by `enabled: false`; a path "" means none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class NeuralMemoryConfig:
    """The meta-learned neural memory (MNM): an MLP whose fast weights are the memory."""

    enabled: bool = True  # false: answers come from the interface state alone (the no-memory ablation)
    rule: Literal["g", "p"] = "g"  # "g": one gradient step per write (MNM-g); "p": learned local layer-wise rule (MNM-p)
    heads: int = 4  # independent MLPs, each holding one slice of every key and value
    key_dim: int = 128  # total key width, split evenly across heads (the shipped checkpoint's)
    hidden_dim: int = 256  # hidden units per head in each hidden layer (the shipped checkpoint's)
    layers: int = 2  # linear layers per head; 1 makes a linear associative memory
    learn_init: bool = True  # meta-learn the initial fast weights; false keeps their random start fixed
    learn_step: bool = True  # meta-learn the per-layer step size that multiplies beta
    checkpoint: str = "checkpoints/mnm_chat.pt"  # trained interface + memory (train_meta.py, configs/meta_chat.yaml); "" = untrained
    min_confidence: float = 0.5  # in chat, a read whose best word is less probable is not used (decoding misses unseen names)


@dataclass
class InterfaceConfig:
    """The trainable network that turns controller hidden states into memory reads and writes."""

    feature_layer: int = 8  # controller layer whose hidden states feed it (0 = embeddings); the adapter leaves it unchanged
    model_dim: int = 128  # width of its token projections and recurrent state (the shipped checkpoint's)
    token_embeddings: bool = False  # token codes also see the tokens' input embeddings (context-free: a name reads the same everywhere)
    recurrent: bool = True  # carry a GRU state across sentences/turns; false treats each alone
    value_copy: bool = True  # values point at the sentence's own token embeddings (copying)
    value_residual: bool = True  # add a learned vector to the value (answers absent from the text: yes, two)
    learned_beta: bool = True  # emit the write rate per sentence; false writes with fixed_beta
    fixed_beta: float = 1.0  # write rate when learned_beta is false
    read_hops: int = 1  # reads per question; a hop's key sees the previous hop's value
    output_mlp: bool = True  # mix the read with the question state before decoding; false decodes the read
    answer_attention: bool = False  # a second question attention (what to compare the read with: "Is Mary in the kitchen?") feeds output_mlp
    center_decoding: bool = False  # decode after subtracting the candidates' mean (similar invented names stay apart)


@dataclass
class MetaLossConfig:
    """Weights of the meta-training loss terms; 0 switches a term off (not even computed)."""

    answer: float = 1.0  # cross-entropy of the decoded read against the answer
    meta: float = 4.0  # MNM meta loss: right after a write, reading its key returns its value
    vicreg: float = 0.125  # variance/covariance of write keys: keeps memories apart
    recall: float = 0.5  # a read of the write key decodes to the tokens the value pointed at
    match: float = 0.0  # a question's read key picks its supporting statements' write keys (InfoNCE): Memoria reminds by these keys
    pointer: float = 0.0  # a teaching statement's value attends to the tokens that spell its value (generated dialogues only)


@dataclass
class MemoriaConfig:
    """The Memoria engram store in chat (memory/memoria.py); a turn is one user message."""

    enabled: bool = True  # false: no engrams are kept or reminded (the ablation)
    num_reminded_stm: int = 16  # short-term engrams reminded per turn, closest first (past questions among them are not shown)
    stm_capacity: int = 400  # short-term engrams per user; older ones become long-term (paper: 400)
    ltm_search_depth: int = 10  # steps of the walk along co-fire links (paper: 10)
    num_final_ltms: int = 4  # long-term engrams reminded per turn, closest first
    initial_lifespan: float = 400.0  # turns a new engram lives unless reminded (paper: 9 segments; a chat turn is longer)
    lifespan_scale: float = 8.0  # lifespan a reminded engram earns when the reply used it as much as the average one (paper: 8)
    reward: Literal["attention", "uniform"] = "attention"  # lifespan reward from "attention" of the reply to the engram's prompt span, or "uniform"
    max_links: int = 64  # co-fire links kept per engram
    # engram vectors: "sentence" (all-MiniLM-L6-v2, the closest to a fact's question), "key" (learned keys), "hidden" (mean state)
    vector: Literal["key", "hidden", "sentence"] = "sentence"
    unit: Literal["sentence", "message"] = "sentence"  # an engram per "sentence", or per "message" (its sentences' vectors averaged)


@dataclass
class ConsolidationConfig:
    """How what the engram store holds is consolidated into the neural memory.

    Off: replay_every at 0; supersede_similarity None.
    """

    replay_every: int = 8  # turns between replays of long-term engrams into the neural memory; 0 = never
    replay_count: int = 8  # long-term engrams replayed each time, most fired first
    # a write key this close (cosine) to an older one supersedes it; None = never: the shipped keys are too alike to tell
    supersede_similarity: float | None = None


@dataclass
class RetrievalConfig:
    """The retrieval baseline: notes from a sentence-embedding index of the user's statements (memory/retrieval.py)."""

    enabled: bool = False  # the benchmark's retrieval-augmented system; the product uses the learned memories
    top_k: int = 4  # statements put in the prompt, closest first

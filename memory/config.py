"""Settings of the memory: the neural memory, its interface and the meta-training losses.

Plain dataclasses with a one-line comment per option; chatbot/config.py loads them
from YAML with every key checked.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class NeuralMemoryConfig:
    """The meta-learned neural memory (MNM): an MLP whose fast weights are the memory."""

    enabled: bool = True  # false: answers come from the interface state alone (the no-memory ablation)
    rule: str = "g"  # "g": one gradient step per write (MNM-g); "p": learned local layer-wise rule (MNM-p)
    heads: int = 4  # independent MLPs, each holding one slice of every key and value
    key_dim: int = 256  # total key width, split evenly across heads
    hidden_dim: int = 256  # hidden units per head in each hidden layer
    layers: int = 2  # linear layers per head; 1 makes a linear associative memory
    learn_init: bool = True  # meta-learn the initial fast weights; false keeps their random start fixed
    learn_step: bool = True  # meta-learn the per-layer step size that multiplies beta
    checkpoint: str = ""  # trained interface + memory from train_meta.py; "" = untrained


@dataclass
class InterfaceConfig:
    """The trainable network that turns controller hidden states into memory reads and writes."""

    feature_layer: int = 8  # controller layer whose hidden states feed it (0 = embeddings)
    model_dim: int = 256  # width of its token projections and recurrent state
    recurrent: bool = True  # carry a GRU state across sentences/turns; false treats each alone
    value_copy: bool = True  # values point at the sentence's own token embeddings (copying)
    value_residual: bool = True  # add a learned vector to the value (answers absent from the text: yes, two)
    learned_beta: bool = True  # emit the write rate per sentence; false writes with fixed_beta
    fixed_beta: float = 1.0  # write rate when learned_beta is false
    read_hops: int = 1  # reads per question; a hop's key sees the previous hop's value
    output_mlp: bool = True  # mix the read with the question state before decoding; false decodes the read
    center_decoding: bool = False  # decode after subtracting the candidates' mean (similar invented names stay apart)


@dataclass
class MetaLossConfig:
    """Weights of the meta-training loss terms; 0 switches a term off (not even computed)."""

    answer: float = 1.0  # cross-entropy of the decoded read against the answer
    meta: float = 4.0  # MNM meta loss: right after a write, reading its key returns its value
    vicreg: float = 0.125  # variance/covariance of write keys: keeps memories apart
    recall: float = 0.5  # a read of the write key decodes to the tokens the value pointed at

"""The elastic vocabulary: tokens that grow from use, strengthen, decay and are pruned."""

from .config import VocabConfig
from .elastic import ElasticVocab, VocabError, VocabEvent
from .lexicon import AddedToken, Lexicon, LexiconError, remap_ids

__all__ = ["AddedToken", "ElasticVocab", "Lexicon", "LexiconError", "VocabConfig", "VocabError", "VocabEvent", "remap_ids"]

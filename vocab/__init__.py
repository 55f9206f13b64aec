"""The elastic vocabulary: tokens that grow from use, strengthen, decay and are pruned, per user."""

from .config import VocabConfig
from .elastic import ElasticVocab, VocabError, VocabEvent
from .lexicon import AddedToken, Lexicon, LexiconError, remap_ids
from .users import Holding, UserVocab

__all__ = ["AddedToken", "ElasticVocab", "Holding", "Lexicon", "LexiconError", "UserVocab", "VocabConfig", "VocabError", "VocabEvent",
           "remap_ids"]

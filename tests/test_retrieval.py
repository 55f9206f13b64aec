import pytest
import torch

from memory.retrieval import RetrievalIndex, SentenceEncoder


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder()


def test_vectors_are_unit_length_and_semantic(encoder):
    v = encoder(["My sister lives in Paris.", "Where does my sister live?", "The stock market fell today."])
    assert v.shape == (3, 384)
    assert torch.allclose(v.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]
    assert encoder([]).shape == (0, 384)


def test_search_finds_the_fact_and_keeps_users_apart(encoder):
    index = RetrievalIndex(encoder)
    index.add("alice", ["My sister Oriel lives in Vantastad.", "I like green tea.", "The vault code is 4417."])
    index.add("bob", ["My dog is called Rex."])
    best, score = index.search("alice", "Where does Oriel live?", k=1)[0]
    assert best == "My sister Oriel lives in Vantastad." and score > 0.3
    assert [t for t, _ in index.search("alice", "what is the vault code", k=3)][0] == "The vault code is 4417."
    assert {t for t, _ in index.search("bob", "Where does Oriel live?", k=5)} == {"My dog is called Rex."}
    assert index.search("carol", "anything", k=3) == [] and "carol" not in index

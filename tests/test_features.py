"""memory/features.py: hidden states of texts at one decoder layer."""

import torch

from memory.features import hidden_states


def test_hidden_states_shapes_and_layers(tiny_controller):
    ids = tiny_controller.tokenizer("the cat sat", add_special_tokens=False, return_tensors="pt")["input_ids"]
    embeddings, first, last = (hidden_states(tiny_controller, ["the cat sat"], layer)[0] for layer in (0, 1, 2))
    assert embeddings.shape == first.shape == last.shape == (ids.shape[1], tiny_controller.hidden_size)
    assert torch.allclose(embeddings, tiny_controller.embed(ids)[0].float())
    assert not torch.allclose(first, embeddings) and not torch.allclose(last, first)


def test_hidden_states_of_a_batch_equal_each_text_alone(tiny_controller):
    texts = ["the cat sat on the mat", "a dog"]
    together = hidden_states(tiny_controller, texts, 1)
    for text, states in zip(texts, together):
        assert torch.allclose(states, hidden_states(tiny_controller, [text], 1)[0], rtol=1e-4, atol=1e-3)

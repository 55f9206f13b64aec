"""ui/: the Memory and Vocabulary tabs' rows, summaries and plots."""

from chatbot.views import vocabulary_view
from storage import Store
from storage.vocab import save_vocab
from ui.vocab_tab import event_rows, size_figure, summary, token_rows
from vocab import ElasticVocab

from .test_vocab import fast_cfg


def test_the_vocabulary_tab_shows_each_user_only_their_own_words(tiny_controller, tmp_path):

    store = Store(tmp_path / "chat.db")
    vocab = ElasticVocab(tiny_controller.tokenizer, fast_cfg())
    for user, text in [("ann", "Remember: Oriel and Vantastad"), ("bob", "Remember: Quillmere"), ("bob", "nothing new")]:
        vocab.observe(text, user=user)
        with store.transaction() as db:
            save_vocab(db, vocab)
    assert [row[0] for row in token_rows(vocabulary_view(vocab, store.db, "ann"))] == ["' Oriel'", "' Vantastad'"]
    assert [row[3] for row in event_rows(vocabulary_view(vocab, store.db, "bob"))] == ["' Quillmere'"]
    assert vocabulary_view(vocab, store.db, "carol").tokens == [] and vocabulary_view(vocab, store.db, "carol").events == []
    vocab.observe("Remember: Oriel", user="bob")  # ann's word grown by bob: his too, in his tab, not hers twice
    with store.transaction() as db:
        save_vocab(db, vocab)
    assert [row[0] for row in token_rows(vocabulary_view(vocab, store.db, "bob"))] == ["' Oriel'", "' Quillmere'"]
    assert [row[0] for row in token_rows(vocabulary_view(vocab, store.db, "ann"))] == ["' Oriel'", "' Vantastad'"]
    # the size plot is the user's own tokens over their own turns
    line = size_figure(vocabulary_view(vocab, store.db, "bob")).axes[0].lines[0]
    assert list(line.get_xdata()) == [0, 1, 3, 3] and list(line.get_ydata()) == [0, 1, 2, 2]
    line = size_figure(vocabulary_view(vocab, store.db, "")).axes[0].lines[0]
    assert list(line.get_ydata()) == [0, 0]
    assert "You hold 2 of them after 3 of your messages, bob" in summary(vocabulary_view(vocab, store.db, "bob"), "bob")

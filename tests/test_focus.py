"""Retrieved chunks cut to the sentences closest to the question, within a token budget."""

from __future__ import annotations

from chat.focus import GAP, focus_sources, focus_text, terms
from chat.prompt import Source


def words(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


CHUNK = ("Acme sells garden tools. Returns are accepted within 30 days of delivery. "
         "Refunds go back to the original card. The warehouse is in Leeds. "
         "Opening hours are nine to five.")


def test_short_text_is_kept_whole():
    assert focus_text("refund?", "One short sentence.", 50, words) == "One short sentence."


def test_keeps_the_matching_sentences_in_order_with_gaps():
    out = focus_text("How do refunds and returns work?", CHUNK, 16, words)
    assert out.startswith(GAP.lstrip() + "Returns are accepted")
    assert "Refunds go back" in out and "Leeds" not in out and "garden" not in out
    assert out.index("Returns") < out.index("Refunds")
    assert sum(words([out.replace("…", "")])) <= 16


def test_without_shared_words_the_opening_sentences_stay():
    out = focus_text("zebra?", CHUNK, 8, words)
    assert out.startswith("Acme sells garden tools.") and out.endswith("…")


def test_one_overlong_sentence_is_cut_to_the_budget():
    text = " ".join(f"w{i}" for i in range(100)) + "."
    out = focus_text("w3", text, 10, words)
    assert len(out.split()) <= 11 and out.endswith("…")


def test_text_without_spaces_is_cut_to_the_budget_too(real_engine):
    """Chinese has no spaces: cutting at words kept a whole 430-token sentence (found by a
    review: four such sources overflowed the context)."""
    text = "退款会在五个工作日内退回原来的银行卡，" * 40 + "。"
    count = real_engine.count_tokens
    assert count([text])[0] > 400
    out = focus_text("退款", text, 64, count)
    assert out.endswith("…") and count([out.removesuffix(" …").removesuffix("…")])[0] <= 64
    assert text.startswith(out.removesuffix("…").rstrip())
    assert count([out])[0] > 40  # close to the budget, not a sliver


def test_budget_zero_keeps_whole_chunks_and_ids():
    src = [Source(7, "doc.md", 0.8, CHUNK)]
    assert focus_sources("refunds", src, 0, words) == src
    cut = focus_sources("refunds", src, 8, words)
    assert cut[0].chunk_id == 7 and cut[0].text != CHUNK and src[0].text == CHUNK


def test_terms_ignore_stopwords_and_stem():
    assert terms("What are the refunds?") == {"refund"}

"""The chat's first screen: example questions from the knowledge base (retrieval/examples.py)."""

from __future__ import annotations

from retrieval.examples import example_questions


def _add_document(store, path: str, title: str | None) -> None:
    with store.write() as db:
        db.conn.execute("INSERT INTO documents (path, sha256, title, size, added_at) "
                        "VALUES (?, 'x', ?, 1, 'now')", (path, title))


def test_shipped_pages_give_one_shipped_question_each(store):
    for name in ("training.md", "troubleshooting.md", "privacy.md", "api.md"):
        _add_document(store, f"/kb/{name}", name)
    questions = example_questions(store)
    assert len(questions) == 3 and len(set(questions)) == 3
    assert questions[:2] == ["How do I undo a bad update to the bot?",  # troubleshooting.md
                             "Can I go back to the previous model version?"]  # training.md


def test_a_knowledge_base_of_its_own_is_asked_about_by_title(store):
    assert example_questions(store) == []  # nothing ingested: no examples
    _add_document(store, "/kb/holidays.md", "Holiday policy")
    _add_document(store, "/kb/expenses.pdf", None)
    assert example_questions(store) == ["What does “expenses” say?",
                                        "What does “Holiday policy” say?"]


def test_a_fresh_server_offers_the_pages_it_will_ingest_on_the_first_question(store):
    from chat.runtime import KNOWLEDGE_DIR

    assert len(example_questions(store, KNOWLEDGE_DIR)) == 3

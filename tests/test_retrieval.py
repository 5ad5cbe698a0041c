"""Retrieval on the real path: real embedder, real hnswlib, real SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

BREAD = """# Baking sourdough bread

Sourdough bread rises with a starter of wild yeast and lactic acid bacteria instead of
commercial yeast. Feed the starter with flour and water the day before baking.

Mix flour, water, salt and starter, then let the dough ferment in bulk for four to six hours,
folding it every half hour. Shape the loaf, proof it overnight in the fridge and bake it in a
very hot Dutch oven, first with the lid on for steam.
"""

VOLCANO_HTML = """<html><head><title>How volcanoes erupt</title></head><body>
<nav><a href="/">Home</a> | <a href="/about">About us</a></nav>
<article><h1>How volcanoes erupt</h1>
<p>A volcano erupts when magma from the mantle rises through the crust. Gas dissolved in the
magma expands as pressure drops, and the expanding gas drives lava, ash and rock out of the
vent.</p>
<p>Runny basaltic lava gives gentle eruptions, as in Hawaii; sticky, gas-rich magma gives
explosive eruptions with pyroclastic flows, as at Mount St. Helens.</p></article>
<footer>Copyright Example Geology Site</footer></body></html>
"""

JUPITER = """Jupiter is the largest planet of the solar system, a gas giant.
It has ninety-five known moons. The four largest, the Galilean moons,
are Io, Europa, Ganymede and Callisto. Europa hides an ocean of water under its ice."""


def make_pdf(text: str) -> bytes:
    """A one-page PDF with `text` in Helvetica, built by hand (xref offsets computed)."""
    lines = [ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
             for ln in text.splitlines()]
    ops = "BT /F1 11 Tf 14 TL 50 750 Td " + " ".join(f"({ln}) '" for ln in lines) + " ET"
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            "/Resources << /Font << /F1 5 0 R >> >> >>",
            f"<< /Length {len(ops)} >>\nstream\n{ops}\nendstream",
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


@pytest.fixture(scope="module")
def embedder():
    """The real all-MiniLM-L6-v2, loaded once for this module."""
    from chat.config import load_config
    from retrieval.embed import Embedder

    emb = Embedder(load_config(device="cpu"))
    assert emb.dim == 384
    return emb


@pytest.fixture
def retriever(cfg, store, embedder):
    from retrieval.retriever import Retriever

    return Retriever(cfg, store, embedder=embedder)


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "bread.md").write_text(BREAD)
    (folder / "sub" / "volcano.html").write_text(VOLCANO_HTML)
    (folder / "jupiter.pdf").write_bytes(make_pdf(JUPITER))
    (folder / ".hidden.md").write_text("# Hidden\nnot to be ingested")
    return folder


def top_document(retriever, question: str) -> str:
    sources = retriever.search(question, 3, 0.0)
    assert sources, question
    return sources[0].document


def test_each_question_retrieves_its_own_document_first(retriever, corpus, store):
    report = retriever.ingest([corpus])
    assert report.as_json() == {"documents_added": 3, "chunks_added": 3, "skipped": 0,
                                "errors": []}
    assert top_document(retriever, "How long does sourdough dough ferment?") == \
        "Baking sourdough bread"
    assert top_document(retriever, "Why do volcanoes explode?") == "How volcanoes erupt"
    assert top_document(retriever, "What are the moons of Jupiter?") == "jupiter"
    html_text = store.one("SELECT text FROM chunks c JOIN documents d ON d.id = c.document_id "
                          "WHERE d.title = 'How volcanoes erupt'")["text"]
    assert "magma" in html_text and "<p>" not in html_text and "Home | About" not in html_text


def test_ask_cites_the_retrieved_document(cfg, store, corpus, real_engine):
    import json

    from chat.engine.engine import GenParams
    from tests.wiring_support import wired

    service = wired(cfg, real_engine, store).service
    service.retriever.ingest([corpus])
    answer = service.ask("Which moons of Jupiter are the largest?", "tester",
                         params=GenParams(0.0, 0.9, 24))
    sources = answer.as_json()["sources"]
    assert sources and sources[0]["document"] == "jupiter"
    assert "Ganymede" in sources[0]["text"] and sources[0]["score"] >= cfg.min_score
    # numbered sources go right before the question; the system prompt stays the same
    assert "Ganymede" in answer.prompt[-1]["content"]
    assert "Ganymede" not in answer.prompt[0]["content"]
    assert answer.prompt[-1]["content"].endswith(
        "\n\nQuestion: Which moons of Jupiter are the largest?")
    recorded = json.loads(store.message(answer.message_id)["sources_json"])
    assert [s["chunk_id"] for s in recorded] == [s["chunk_id"] for s in sources]


def test_shipped_knowledge_answers_on_topic_and_stays_quiet_off_topic(cfg, real_engine):
    from chat.runtime import build_runtime

    service = build_runtime(cfg, engine=real_engine).service
    on_topic = service.retrieve("How do I roll back to an earlier adapter?")
    assert on_topic and on_topic[0].document == "Training adapters and rolling back"
    assert service.retrieve("How do I rate an answer?")[0].document.startswith("Rating")
    for question in ("What is the capital of France?", "Write a poem about the sea",
                     "How many legs does a spider have?"):
        assert service.retrieve(question) == [], question


def test_prompt_holds_the_part_of_each_chunk_closest_to_the_question(cfg, real_engine):
    import re

    from chat.engine.engine import GenParams
    from chat.runtime import build_runtime

    service = build_runtime(cfg, engine=real_engine).service
    answer = service.ask("How do I roll back to an earlier adapter?", "tester",
                         params=GenParams(0.0, 0.9, 4))
    asked = answer.prompt[-1]["content"].rsplit("\n\nQuestion: ", 1)[0]
    blocks = re.split(r"\n+\[\d+\] ", asked)[1:]
    assert len(blocks) == len(answer.sources) >= 1
    whole = answer.sources[0].text  # the Sources panel and the record keep the whole chunk
    assert real_engine.count_tokens([whole])[0] > cfg.source_tokens and whole not in asked
    for block in blocks:
        text = block.split(") ", 1)[1].replace("…", "")
        assert real_engine.count_tokens([text])[0] <= cfg.source_tokens + 4
    assert "roll" in blocks[0].lower()


def test_a_follow_up_reuses_the_cached_earlier_turns(cfg, real_engine):
    from chat.engine.engine import BASE, GenParams
    from chat.runtime import build_runtime

    service = build_runtime(cfg, engine=real_engine).service
    history: list[dict] = []
    for question in ("How do I rate an answer?", "How do I roll back to an earlier adapter?",
                     "How do I add documents to the knowledge base?"):
        answer = service.ask(question, "tester", history=history,
                             params=GenParams(0.0, 0.9, 12))
        assert answer.sources  # each turn brings sources of its own
        history += [{"role": "user", "content": question},
                    {"role": "assistant", "content": answer.text}]
    ids, cache = real_engine.prepare(BASE).prefixes.last()
    assert ids == real_engine.encode(answer.prompt)
    # the third turn's prompt: system, turn one, then turn two and the new question; the
    # system prompt and all of turn one came from the cache, not just the system prompt
    turn_one = len(real_engine.encode(answer.prompt[:3])) - 3  # less the assistant header
    assert cache.reused >= turn_one > len(real_engine.encode(answer.prompt[:1]))


def test_reingesting_unchanged_adds_nothing_and_changed_replaces_chunks(retriever, corpus,
                                                                       store):
    retriever.ingest([corpus])
    before = store.query("SELECT id, text FROM chunks ORDER BY id")
    again = retriever.ingest([corpus])
    assert again.as_json() == {"documents_added": 0, "chunks_added": 0, "skipped": 3,
                               "errors": []}
    assert store.query("SELECT id, text FROM chunks ORDER BY id") == before

    (corpus / "bread.md").write_text(BREAD.replace("Dutch oven", "clay cloche"))
    changed = retriever.ingest([corpus])
    assert (changed.documents_added, changed.skipped) == (1, 2)
    assert store.one("SELECT count(*) AS n FROM documents")["n"] == 3
    old_ids = {r["id"] for r in before if "Dutch oven" in r["text"]}
    texts = [r["text"] for r in store.query("SELECT text FROM chunks")]
    assert not any("Dutch oven" in t for t in texts) and any("clay cloche" in t for t in texts)
    assert not old_ids & set(retriever.index.keys)
    hit = retriever.search("bake the loaf in a clay cloche", 1, 0.0)[0]
    assert "clay cloche" in hit.text

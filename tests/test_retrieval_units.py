"""Chunking, parsing and the hnswlib index wrapper on their own (real tokenizer, real hnswlib)."""

from __future__ import annotations

import numpy as np
import pytest

from chat.errors import BadInput


@pytest.fixture(scope="module")
def embedder():
    from chat.config import load_config
    from retrieval.embed import Embedder

    return Embedder(load_config(device="cpu"))


def test_chunks_respect_the_token_budget_and_overlap(embedder):
    from retrieval.chunking import chunk_text

    paragraphs = [" ".join(f"Paragraph {p} sentence {s} talks about topic {p * 7 + s}."
                           for s in range(6)) for p in range(12)]
    chunks = chunk_text("\n\n".join(paragraphs), embedder, chunk_tokens=120, overlap=30)
    assert len(chunks) > 3
    assert all(c.n_tokens <= 120 for c in chunks)
    assert [c.n_tokens for c in chunks] == embedder.count([c.text for c in chunks])
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.text.split(".")[0] in a.text  # the next chunk starts with the previous tail
    assert all(c.text.endswith(".") for c in chunks)  # cut on sentence boundaries


def test_one_overlong_sentence_is_cut_into_windows(embedder):
    from retrieval.chunking import chunk_text

    text = " ".join(f"w{i}" for i in range(1500))  # no punctuation at all
    chunks = chunk_text(text, embedder, chunk_tokens=100, overlap=0)
    assert all(c.n_tokens <= 100 for c in chunks)
    joined = " ".join(c.text for c in chunks).split()
    assert joined == text.split()


def test_parse_markdown_title_and_plain_text(tmp_path):
    from retrieval.parse import parse

    path = tmp_path / "x.md"
    parsed = parse(path, b"<!-- hidden -->\n# My Title\n\nBody text.\r\n\r\n\r\nMore.")
    assert parsed.title == "My Title"
    assert "hidden" not in parsed.text and "Body text.\n\nMore." in parsed.text
    with pytest.raises(BadInput):
        parse(tmp_path / "y.txt", b"  \n\n ")
    with pytest.raises(BadInput):
        parse(tmp_path / "z.txt", b"\x00\x01binary")


def test_index_grows_saves_loads_and_forgets_deleted(tmp_path):
    from retrieval.index import VectorIndex

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(300, 16)).astype(np.float32)
    index = VectorIndex(tmp_path / "i.hnsw", 16, "test-embedder", m=8, ef_construction=64)
    ids = list(range(1000, 1300))
    index.add(ids, vecs, [f"k{i}" for i in ids])  # starts at capacity 64: must resize
    assert index.search(vecs[5], 1)[0][0][0] == 1005
    index.remove([1005])
    assert all(label != 1005 for label, _ in index.search(vecs[5], 10)[0])
    index.save()

    loaded = VectorIndex(tmp_path / "i.hnsw", 16, "test-embedder", m=8)
    assert loaded.load() and len(loaded) == 299 and 1005 not in loaded.keys
    assert loaded.search(vecs[7], 1)[0][0] == (1007, pytest.approx(1.0, abs=1e-4))
    other = VectorIndex(tmp_path / "i.hnsw", 16, "another-embedder", m=8)
    assert not other.load() and len(other) == 0  # built by another embedder: rebuild


def test_search_on_tiny_index_with_deletions_returns_what_exists(tmp_path):
    from retrieval.index import VectorIndex

    index = VectorIndex(tmp_path / "t.hnsw", 8, "e", m=4, ef_construction=16, ef=2)
    vecs = np.eye(8, dtype=np.float32)
    index.add(list(range(1, 9)), vecs, [str(i) for i in range(8)])
    index.remove([1, 2, 3, 4, 5])
    hits = index.search(vecs[0], 10)[0]
    assert sorted(label for label, _ in hits) == [6, 7, 8]

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


@pytest.mark.parametrize("source, title", [
    ("# Title\nbody", "Title"),
    ("#   Spaced Title   \nbody", "Spaced Title"),
    ("# Closed Title ##  \nbody", "Closed Title"),
    ("# C# tips\nbody", "C# tips"),
    ("# ##\n# Next\nbody", "Next"),  # an empty heading is no title
    ("intro\n#NoSpace\n## Second level\n# Real\nbody", "Real"),
    ("#\n\nNot a heading\nbody", "doc"),  # no heading: the file name
    ("#NoSpace\nbody", "doc"),
])
def test_parse_markdown_title_cases(tmp_path, source, title):
    from retrieval.parse import parse

    assert parse(tmp_path / "doc.md", source.encode()).title == title


def test_parse_markdown_adversarial_inputs_take_linear_time(tmp_path):
    import time

    from retrieval.parse import parse

    # the old title regex backtracked cubically on a long line (1.6 KB took 6 s)
    started = time.perf_counter()
    parsed = parse(tmp_path / "a.md", b"# a" + b" " * 200_000 + b"b  ##  \n\nBody.")
    assert parsed.title == "a" + " " * 200_000 + "b"
    assert parsed.text == "# a b ## \n\nBody."
    # ... and the old comment regex was quadratic on unclosed "<!--" (64 KB took 5 s)
    parsed = parse(tmp_path / "b.md", b"<!--" * 50_000)
    assert parsed.title == "b" and parsed.text == "<!--" * 50_000  # unclosed: kept as text
    parsed = parse(tmp_path / "c.md", b"<!--" * 50_000 + b"-->\n# Title\n<!-- x -->Body.")
    assert parsed.title == "Title" and parsed.text == "# Title\nBody."
    assert time.perf_counter() - started < 2  # generous: each takes milliseconds


def test_parse_decodes_byte_order_marks_like_utf8(tmp_path):
    import codecs

    from retrieval.parse import parse

    text = "<!-- note -->\n# Café Überblick\n\nBody — naïve text.\r\n\r\n\r\nMore ✓."
    expected = parse(tmp_path / "doc.md", text.encode("utf-8"))
    assert expected.title == "Café Überblick"
    assert expected.text == "# Café Überblick\n\nBody — naïve text.\n\nMore ✓."
    for data in (codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
                 codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
                 codecs.BOM_UTF8 + text.encode("utf-8")):
        assert parse(tmp_path / "doc.md", data) == expected
    assert parse(tmp_path / "doc.txt", text.encode("utf-16")).text == "\n".join(
        ["<!-- note -->", "# Café Überblick", "", "Body — naïve text.", "", "More ✓."])
    with pytest.raises(BadInput):  # odd byte count: not UTF-16
        parse(tmp_path / "bad.md", text.encode("utf-16")[:-1])
    with pytest.raises(BadInput):  # NUL characters: still binary
        parse(tmp_path / "bin.txt", "\x00\x01binary".encode("utf-16"))


def test_legacy_windows_text_keeps_its_punctuation(tmp_path):
    from retrieval.parse import parse

    text = "Don’t pay more than €20 — it’s “free” shipping…"
    assert parse(tmp_path / "old.txt", text.encode("cp1252")).text == text
    assert parse(tmp_path / "odd.txt", b"caf\xe9 \x81").text == "café \x81"  # Latin-1 then


def test_a_pdf_with_only_an_owner_password_is_read(tmp_path):
    """Owner passwords restrict printing or copying; the text opens with the empty password."""
    import io

    from pypdf import PdfWriter
    from pypdf.generic import NameObject, StreamObject

    from retrieval.parse import parse

    def pdf(user_password: str) -> bytes:
        writer = PdfWriter()
        page = writer.add_blank_page(width=300, height=100)
        font = writer._add_object(_helvetica())
        page[NameObject("/Resources")] = _resources(font)
        content = StreamObject()
        content.set_data(b"BT /F1 12 Tf 20 50 Td (Refunds take five days.) Tj ET")
        page[NameObject("/Contents")] = writer._add_object(content)
        writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    assert "Refunds take five days." in parse(tmp_path / "perm.pdf", pdf("")).text
    with pytest.raises(BadInput, match="password is needed"):
        parse(tmp_path / "locked.pdf", pdf("secret"))


def _helvetica():
    from pypdf.generic import DictionaryObject, NameObject

    return DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                             NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})


def _resources(font):
    from pypdf.generic import DictionaryObject, NameObject

    return DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})


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


def test_a_save_cut_between_its_two_renames_is_not_loaded(tmp_path, monkeypatch):
    """The index file is renamed into place first: a crash before the metadata follows leaves
    a new index of the same size beside the old metadata, which must not be believed."""
    import os

    from retrieval.index import VectorIndex

    vecs = np.random.default_rng(0).normal(size=(2, 16)).astype(np.float32)
    index = VectorIndex(tmp_path / "i.hnsw", 16, "test-embedder", m=8)
    index.add([1, 2], vecs, ["a", "b"])
    index.save()
    index.add([2], -vecs[1:], ["b2"])  # chunk 2 re-embedded: same ids, same file size
    renames = []

    def crash_on_the_second(src, dst):
        renames.append(dst)
        if len(renames) == 2:
            raise KeyboardInterrupt("power cut")
        os.rename(src, dst)

    monkeypatch.setattr("retrieval.index.os.replace", crash_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        index.save()
    monkeypatch.undo()
    loaded = VectorIndex(tmp_path / "i.hnsw", 16, "test-embedder", m=8)
    assert not loaded.load() and len(loaded) == 0  # rebuilt from SQLite by the retriever


def test_search_on_tiny_index_with_deletions_returns_what_exists(tmp_path):
    from retrieval.index import VectorIndex

    index = VectorIndex(tmp_path / "t.hnsw", 8, "e", m=4, ef_construction=16, ef=2)
    vecs = np.eye(8, dtype=np.float32)
    index.add(list(range(1, 9)), vecs, [str(i) for i in range(8)])
    index.remove([1, 2, 3, 4, 5])
    hits = index.search(vecs[0], 10)[0]
    assert sorted(label for label, _ in hits) == [6, 7, 8]


def test_no_retrieval_loads_no_embedder_and_seeds_nothing(tmp_path, cfg, store):
    """top_k 0 is 'no retrieval': a question must not load the embedder or ingest the seed
    folder (which would fail where the embedder is not installed)."""
    from retrieval.retriever import Retriever

    class Unloadable:
        name = "unloadable"

        @property
        def dim(self):
            raise AssertionError("the embedder was loaded")

        def encode(self, *args, **kwargs):
            raise AssertionError("the embedder was used")

    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "a.md").write_text("# A\n\nSome text about lighthouses.\n")
    retriever = Retriever(cfg, store, embedder=Unloadable(), seed_dir=seed)
    assert retriever.search("lighthouses?", 0, 0.0) == []
    assert store.one("SELECT count(*) AS n FROM documents")["n"] == 0


@pytest.mark.parametrize("top_k, loads", [(0, False), (4, True)])
def test_serve_loads_the_index_at_start_only_when_retrieval_is_on(cfg, monkeypatch, top_k,
                                                                  loads):
    from types import SimpleNamespace

    import uvicorn

    from chat import server
    from chat.config import replace

    refreshed = []
    fake = SimpleNamespace(service=SimpleNamespace(
        retriever=SimpleNamespace(refresh=lambda: refreshed.append(True)),
        adapters=SimpleNamespace(start=lambda: None)))
    monkeypatch.setattr(server, "build_runtime", lambda cfg: fake)
    monkeypatch.setattr(server, "build_server", lambda rt: None)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    server.serve(replace(cfg, top_k=top_k), "127.0.0.1", 7860)
    assert refreshed == ([True] if loads else [])

"""The retrieval subcommands end to end, in a subprocess like a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ), timeout=600)


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "tea.md").write_text(
        "# Brewing green tea\n\nBrew green tea at 80 degrees Celsius for two minutes; "
        "boiling water makes it bitter.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf")
    return folder


def test_ingest_list_and_delete_print_the_documented_json(docs):
    out = run_cli("ingest", str(docs), "--json")
    assert out.returncode == 1, out.stderr  # 1: some files were reported in errors
    report = json.loads(out.stdout)
    assert set(report) == {"documents_added", "chunks_added", "skipped", "errors"}
    assert (report["documents_added"], report["chunks_added"], report["skipped"]) == (1, 1, 0)
    assert [Path(e["path"]).name for e in report["errors"]] == ["broken.pdf"]

    listed = json.loads(run_cli("documents", "list", "--json").stdout)
    assert [(d["title"], d["chunks"]) for d in listed] == [("Brewing green tea", 1)]
    assert run_cli("ingest", str(docs / "tea.md"), "--json").returncode == 0

    out = run_cli("documents", "delete", str(listed[0]["id"]))
    assert out.returncode == 0 and json.loads(run_cli("documents", "list", "--json").stdout) == []
    out = run_cli("documents", "delete", "999")
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == "error: no document 999"


@pytest.mark.slow
def test_ask_json_cites_an_ingested_document(docs):
    assert run_cli("ingest", str(docs / "tea.md")).returncode == 0
    out = run_cli("ask", "At what temperature should I brew green tea?", "--json",
                  "--max-new-tokens", "24")
    assert out.returncode == 0, out.stderr
    sources = json.loads(out.stdout)["sources"]
    assert sources[0]["document"] == "Brewing green tea"
    assert "80 degrees" in sources[0]["text"] and isinstance(sources[0]["chunk_id"], int)

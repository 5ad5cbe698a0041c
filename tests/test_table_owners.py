"""One owner per table family: only the owning module(s) write SQL naming a table; everyone
else calls their functions. Found by reading every project module's string constants (and
f-string parts) with `ast`, so a query spread over several lines is seen as one string."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("chat", "feedback", "training", "retrieval", "tools", "launch.py")
SCHEMA = "feedback.migrations"  # creates every table: exempt
# table family -> (the module that writes it, modules that may also read it)
FAMILIES = {
    ("users", "api_keys"): ("chat.auth", ()),
    ("prompt_profiles",): ("chat.profiles", ()),
    ("documents", "chunks"): ("retrieval.ingest", ("retrieval.retriever", "feedback.sources",
                                                    "training.retrieval_run",
                                                    "retrieval.examples")),
    ("source_feedback",): ("feedback.sources", ()),
    ("retrievers", "retriever_serving_log"): ("retrieval.versions", ()),
    ("adapters", "serving_log"): ("training.registry", ()),
    ("training_runs", "training_events"): ("training.runs", ()),
    ("conversations", "messages", "ratings", "corrections", "preferences", "comparisons"):
        ("feedback.store", ("feedback.stats", "feedback.export", "feedback.sources")),
}
WRITER = {t: writer for tables, (writer, _) in FAMILIES.items() for t in tables}
OWNERS = {t: (writer, *readers) for tables, (writer, readers) in FAMILIES.items()
          for t in tables}
DYNAMIC = "{}"  # stands for a table name only known at run time (`INSERT INTO {table}`)
# where a table name may be a run-time value: the store's one generic insert, the schema, and
# the served-versions helper each registry calls with its own tables (feedback/served.py)
DYNAMIC_OWNERS = ("feedback.store", SCHEMA, "feedback.served")
# uppercase keywords only: SQL here is written in capitals, prose ("read from messages") not
SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(\{\}|[A-Za-z_]\w*)")
SQL_WRITE = re.compile(r"\b(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)"
                       r"\s+(\{\}|[A-Za-z_]\w*)")


def _modules() -> dict[str, Path]:
    found = {}
    for name in SOURCES:
        paths = [ROOT / name] if name.endswith(".py") else sorted((ROOT / name).rglob("*.py"))
        for path in paths:
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _strings(source: str) -> list[str]:
    """Every string constant, an f-string as one string with `{}` for each placeholder."""
    tree = ast.parse(source)
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else DYNAMIC
                               for v in node.values))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in parts):
            out.append(node.value)
    return out


def tables_named(source: str, pattern: re.Pattern = SQL_TABLE) -> set[str]:
    """Table names (or DYNAMIC) that follow FROM/JOIN/INTO/UPDATE/TABLE in a string; with
    SQL_WRITE, only those an INSERT, UPDATE or DELETE changes."""
    return {m for s in _strings(source) for m in pattern.findall(s)}


def _known_tables() -> set[str]:
    schema = _modules()[SCHEMA].read_text()
    return set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", schema))


def _mentions(pattern: re.Pattern = SQL_TABLE) -> dict[str, set[str]]:
    """table -> modules whose SQL names it (DYNAMIC included)."""
    known = _known_tables() | {DYNAMIC}
    found: dict[str, set[str]] = {}
    for module, path in _modules().items():
        for table in tables_named(path.read_text(), pattern) & known:
            found.setdefault(table, set()).add(module)
    return found


def test_the_scanner_finds_tables_in_sql_strings():
    sample = '''
def f(store, t, sets):
    store.query("SELECT r.id FROM ratings r "
                "JOIN messages m ON m.id = r.message_id")
    store.query(f"UPDATE training_runs SET {sets} WHERE id = ?")
    store.query(f"SELECT count(*) FROM {t}")
    """Reads from documents, in prose: not SQL."""
    return "INSERT INTO adapters (version) VALUES (?)"
'''
    assert tables_named(sample) == {"ratings", "messages", "training_runs", DYNAMIC,
                                    "adapters"}
    assert tables_named(sample, SQL_WRITE) == {"training_runs", "adapters"}


def test_every_table_has_an_owner():
    assert _known_tables() == set(OWNERS)


def test_only_the_owner_writes_sql_on_a_table():
    strays = []
    for table, modules in sorted(_mentions().items()):
        allowed = {SCHEMA, *(DYNAMIC_OWNERS if table == DYNAMIC else OWNERS[table])}
        strays += [f"{m} names {table}" for m in sorted(modules - allowed)]
    assert strays == []


def test_readers_only_read():
    strays = []
    for table, modules in sorted(_mentions(SQL_WRITE).items()):
        if table != DYNAMIC:
            strays += [f"{m} changes {table}" for m in sorted(modules - {SCHEMA, WRITER[table]})]
    assert strays == []

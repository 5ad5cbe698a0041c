"""Ordered schema migrations. Never edit one that has landed: add a new one."""

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("learning-chat")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE users (
            name TEXT PRIMARY KEY, role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
            password_hash TEXT, created_at TEXT NOT NULL);
        CREATE TABLE api_keys (
            key_hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name),
            created_at TEXT NOT NULL);
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY, user TEXT NOT NULL, created_at TEXT NOT NULL, title TEXT);
        CREATE TABLE prompt_profiles (
            version INTEGER PRIMARY KEY, system_prompt TEXT NOT NULL,
            few_shot_json TEXT NOT NULL DEFAULT '[]', source_template TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('draft', 'active', 'retired')),
            note TEXT, created_by TEXT, created_at TEXT NOT NULL);
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            parent_id INTEGER REFERENCES messages(id),
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL, adapter_version TEXT, prompt_version INTEGER,
            sources_json TEXT, params_json TEXT, prompt_json TEXT, created_at TEXT NOT NULL);
        CREATE INDEX messages_conversation ON messages(conversation_id);
        CREATE TABLE ratings (
            id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL REFERENCES messages(id),
            user TEXT NOT NULL, value INTEGER NOT NULL CHECK (value IN (-1, 1)),
            reason TEXT, comment TEXT, created_at TEXT NOT NULL,
            UNIQUE (message_id, user));
        CREATE TABLE corrections (
            id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL REFERENCES messages(id),
            user TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE TABLE preferences (
            id INTEGER PRIMARY KEY, prompt_json TEXT NOT NULL, chosen TEXT NOT NULL,
            rejected TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('compare', 'correction', 'import')),
            user TEXT NOT NULL, message_id INTEGER REFERENCES messages(id),
            adapter_version TEXT, prompt_version INTEGER, created_at TEXT NOT NULL);
        CREATE TABLE comparisons (
            id INTEGER PRIMARY KEY, prompt_json TEXT NOT NULL, answer_a TEXT NOT NULL,
            answer_b TEXT NOT NULL, adapter_a TEXT, adapter_b TEXT,
            choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
            user TEXT NOT NULL, preference_id INTEGER REFERENCES preferences(id),
            created_at TEXT NOT NULL);
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL,
            title TEXT, size INTEGER, added_at TEXT NOT NULL);
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            position INTEGER NOT NULL, text TEXT NOT NULL, n_tokens INTEGER);
        CREATE INDEX chunks_document ON chunks(document_id);
        CREATE TABLE adapters (
            version TEXT PRIMARY KEY, path TEXT NOT NULL, parent_version TEXT,
            method TEXT NOT NULL, base_model TEXT, metrics_json TEXT, meta_json TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('training', 'candidate', 'active', 'rejected', 'retired')),
            run_id INTEGER, created_at TEXT NOT NULL, activated_at TEXT);
        CREATE TABLE training_runs (
            id INTEGER PRIMARY KEY, method TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'running', 'succeeded', 'rejected', 'failed', 'cancelled')),
            requested_by TEXT, pid INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL, finished_at TEXT, n_examples INTEGER,
            adapter_version TEXT, progress_json TEXT, metrics_json TEXT, error TEXT);
        CREATE TABLE training_events (
            id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES training_runs(id),
            step INTEGER NOT NULL, total INTEGER, metrics_json TEXT NOT NULL,
            created_at TEXT NOT NULL);
        """
    )


@migrations()
def m002_serving_log(db: Database) -> None:
    """What was served, in order (version NULL: the base model), so a rollback returns to the
    state before the current one even when the base model was served in between."""
    db.executescript(
        """
        CREATE TABLE serving_log (
            id INTEGER PRIMARY KEY, version TEXT REFERENCES adapters(version),
            at TEXT NOT NULL);
        INSERT INTO serving_log (version, at)
            SELECT version, activated_at FROM adapters WHERE activated_at IS NOT NULL
            ORDER BY activated_at, version;
        INSERT INTO serving_log (version, at)
            SELECT NULL, strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now') FROM adapters
            WHERE activated_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM adapters WHERE status = 'active') LIMIT 1;
        """
    )


@migrations()
def m003_run_process_identity(db: Database) -> None:
    """A training run's process by more than its pid: after a reboot (or a long time) the pid
    may belong to another process, and the run would look alive forever."""
    db["training_runs"].add_column("pid_identity", str)


@migrations()
def m004_adapter_erased_data(db: Database) -> None:
    """Adapters trained on feedback of a user who was since forgotten: never served again."""
    db["adapters"].add_column("erased_data", int, not_null_default=0)


@migrations()
def m005_source_feedback_and_retrievers(db: Database) -> None:
    """Source feedback ("helped" / "not relevant" on a chunk an answer cited, or imported with
    its query), retriever versions trained from it, and which one each answer searched with.
    chunk_id is not a foreign key: a re-ingested document gets new chunks, the feedback stays."""
    db.executescript(
        """
        CREATE TABLE source_feedback (
            id INTEGER PRIMARY KEY, user TEXT NOT NULL, query TEXT NOT NULL,
            chunk_id INTEGER NOT NULL, value INTEGER NOT NULL CHECK (value IN (1, -1)),
            message_id INTEGER REFERENCES messages(id), created_at TEXT NOT NULL);
        CREATE INDEX source_feedback_message ON source_feedback(message_id);
        CREATE TABLE retrievers (
            version TEXT PRIMARY KEY, status TEXT NOT NULL, run_id INTEGER,
            created_at TEXT NOT NULL, activated_at TEXT, metrics_json TEXT, meta_json TEXT,
            erased_data INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE retriever_serving_log (
            id INTEGER PRIMARY KEY, version TEXT REFERENCES retrievers(version),
            at TEXT NOT NULL);
        """
    )
    db["messages"].add_column("retriever_version", str)


@migrations()
def m006_conversation_hidden(db: Database) -> None:
    """A conversation its user deleted from their list: hidden, its feedback kept."""
    db["conversations"].add_column("hidden_at", str)


COUNTED = ("conversations", "messages", "ratings", "corrections", "preferences", "comparisons",
           "source_feedback", "documents", "chunks", "adapters", "retrievers", "training_runs")


def table_counts(db: Database) -> dict[str, int]:
    """Rows per table. It spans every table family, so it lives with the schema, the one module
    that knows them all, rather than in any family's owner."""
    return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}

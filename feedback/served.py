"""What is served, for each versioned kind: a table of versions (`status` 'active' on at most
one row, `erased_data` on those trained on a forgotten user's feedback) and a log of every
switch, which rollback reads. The registries own their tables (training/registry.py:
adapters + serving_log; retrieval/versions.py: retrievers + retriever_serving_log) and do
their switching through one of these, so both kinds roll back and forget alike."""

from __future__ import annotations

from dataclasses import dataclass

from feedback.store import Store, utcnow


@dataclass(frozen=True)
class ServedVersions:
    table: str  # the versions
    log: str  # (version or NULL for "none", at): one row per switch

    def active(self, store: Store) -> str | None:
        row = store.one(f"SELECT version FROM {self.table} WHERE status = 'active'")
        return row["version"] if row else None

    def active_in(self, db) -> str | None:
        """The served version, read inside the caller's write transaction."""
        row = db.conn.execute(
            f"SELECT version FROM {self.table} WHERE status = 'active'").fetchone()
        return row[0] if row else None

    def switch(self, db, version: str | None) -> None:
        """Inside the caller's write transaction: serve `version` (None: no version), the
        one served before retired, the change logged."""
        db.conn.execute(f"UPDATE {self.table} SET status = 'retired' WHERE status = 'active'")
        now = utcnow()
        if version is not None:
            db.conn.execute(f"UPDATE {self.table} SET status = 'active', activated_at = ? "
                            "WHERE version = ?", (now, version))
        db.conn.execute(f"INSERT INTO {self.log} (version, at) VALUES (?, ?)", (version, now))

    def switches(self, store: Store, limit: int = 200) -> list[dict]:
        """The latest `limit` switches, oldest first: {"version" (None: no version), "at"}."""
        return store.query(f"SELECT version, at FROM {self.log} ORDER BY id DESC LIMIT ?",
                           (limit,))[::-1]

    def before(self, store: Store, current: str | None) -> dict | None:
        """The state served before `current` came in (row with `version`, None meaning no
        version), skipping versions since marked erased; None when nothing was before."""
        return store.one(
            f"SELECT version FROM {self.log} WHERE version IS NOT ? AND id < "
            f"(SELECT MAX(id) FROM {self.log} WHERE version IS ?) AND (version IS NULL OR "
            f"version IN (SELECT version FROM {self.table} WHERE NOT erased_data)) "
            "ORDER BY id DESC LIMIT 1", (current, current))

    def mark_erased(self, db, versions: list[str]) -> tuple[str | None, str | None]:
        """Inside forget's transaction: mark `versions` as holding erased data; if the served
        one is among them, serve the latest earlier-served version without such data (never
        a rejected one), or none. Returns (served before, served now)."""
        for version in versions:
            db.conn.execute(f"UPDATE {self.table} SET erased_data = 1 WHERE version = ?",
                            (version,))
        served = self.active_in(db)
        if served not in versions:
            return served, served
        row = db.conn.execute(
            f"SELECT version FROM {self.log} WHERE version IN (SELECT version FROM "
            f"{self.table} WHERE NOT erased_data AND status != 'rejected') "
            "ORDER BY id DESC LIMIT 1").fetchone()
        self.switch(db, row[0] if row else None)
        return served, row[0] if row else None

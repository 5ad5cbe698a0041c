"""Feedback: the SQLite store (source of truth), its migrations, import/export."""

"""Retrieval: parse, chunk and embed documents; SQLite holds the text, hnswlib a derived index."""

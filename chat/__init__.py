"""Chat: model loading, prompt building, streaming generation, hot-swap, the web app and API."""

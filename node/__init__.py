"""The inference node: an OpenAI-compatible Tornado server with per-model admission control."""

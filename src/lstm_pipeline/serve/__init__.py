"""``lstm-pipeline serve``: an OpenAI-compatible HTTP API with continuous batching (see docs/serve.md)."""

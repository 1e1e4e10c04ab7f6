"""Test infrastructure shipped with alambic, for its own tests and users' tests alike.

- ``openai_server``: a fast OpenAI-compatible HTTP server with fault knobs (latency, 429s,
  rate limits, malformed or truncated replies, dropped or hung connections).
- ``tiny_model``: builds a tiny chat model (and a reward model) on the fly, in seconds.
- wire-format servers for other providers (Anthropic, Cohere, Ollama, Gemini) and a minimal
  Hugging Face Hub server, all bound to 127.0.0.1.
- ``alambic.llms.FakeLLM`` is the deterministic LLM to use in unit tests.
"""

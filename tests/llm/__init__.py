"""LLM access (tools.llm) and the wire-compatible fake Ollama it is tested against."""

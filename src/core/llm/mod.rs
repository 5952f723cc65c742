//! LLM clients (Ollama, OpenAI-compatible/OpenRouter), routing, budget and ledger.

"""LiteLLM's SDK against the stub server of `cargo bench --bench llm`: sequential streamed completions,
timed in-process, the same request `openrouter.chat` sends in that bench.

Usage: python litellm_bench.py <api_base> <calls>  -> prints microseconds per call.
Run by benches/llm.rs with the interpreter of a venv that has litellm installed.
"""

import os
import sys
import time

# The bundled cost map instead of downloading it; no telemetry.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_TELEMETRY"] = "False"

import litellm  # noqa: E402

litellm.telemetry = False

API_BASE = sys.argv[1]
CALLS = int(sys.argv[2])


def call():
    stream = litellm.completion(
        model="openrouter/bench/model",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=16,
        stream=True,
        api_base=API_BASE,
        api_key="sk-bench",
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from the stub", text


for _ in range(5):
    call()
start = time.perf_counter()
for _ in range(CALLS):
    call()
print(f"{(time.perf_counter() - start) / CALLS * 1e6:.1f}")

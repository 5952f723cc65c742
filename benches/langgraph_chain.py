"""LangGraph's side of `cargo bench --bench runs`: a 10-node chain compiled with the SQLite checkpointer
(langgraph-checkpoint-sqlite's SqliteSaver on a file database), invoked N times, each invocation its own
thread (a new run, as each `baton run` is). Every node adds one to a counter, as each `baton.step` of the
baton playbook does; the checkpointer stores the state after every node.

Usage: langgraph_chain.py DB N [full|normal] [cold]
  full    SqliteSaver as shipped: WAL, Python's default synchronous=FULL (an fsync per checkpoint).
  normal  the same with PRAGMA synchronous=NORMAL, the setting baton's state database uses.
  cold    no warm-up invocations: the bench times the whole process from outside (start-up, imports,
          opening the database, N runs), as it times each `baton run`.

Prints one JSON line: µs per step and per invocation (timed in-process after 5 warm-up invocations, so
Python's start-up and imports are not counted), and the database's size on disk.
"""

import json
import os
import sqlite3
import sys
import time
from typing import TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

NODES = 10
WARMUP = 5


class Counter(TypedDict):
    n: int


def add_one(state: Counter) -> Counter:
    return {"n": state["n"] + 1}


def chain(saver: SqliteSaver):
    graph = StateGraph(Counter)
    previous = START
    for i in range(1, NODES + 1):
        name = f"node{i}"
        graph.add_node(name, add_one)
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=saver)


def disk_size(db: str) -> int:
    return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))


def main() -> None:
    db, n = sys.argv[1], int(sys.argv[2])
    sync = sys.argv[3] if len(sys.argv) > 3 else "full"
    warmup = 0 if sys.argv[4:5] == ["cold"] else WARMUP
    conn = sqlite3.connect(db, check_same_thread=False)
    if sync == "normal":
        conn.execute("PRAGMA synchronous=NORMAL")
    saver = SqliteSaver(conn)
    app = chain(saver)
    for i in range(warmup):
        out = app.invoke({"n": 0}, {"configurable": {"thread_id": f"warmup-{i}"}})
        assert out["n"] == NODES, out
    started = time.perf_counter()
    for i in range(n):
        out = app.invoke({"n": 0}, {"configurable": {"thread_id": f"run-{i}"}})
        assert out["n"] == NODES, out
    took = time.perf_counter() - started
    conn.close()
    print(
        json.dumps(
            {
                "per_step_us": took / (n * NODES) * 1e6,
                "per_run_us": took / n * 1e6,
                "runs": n + warmup,
                "db_bytes": disk_size(db),
            }
        )
    )


if __name__ == "__main__":
    main()

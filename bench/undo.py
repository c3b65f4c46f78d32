"""The undo step: undoing a large import, set beside the time the import itself took."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.stack import Stack


def undo_run(stack: Stack, results: Any, path: Path, rows: int, pipeline_import: Any, verdict: Any) -> None:
    """Import the file, then undo it through the API; seconds of each, and their ratio (target ≤ 1)."""
    imported, _peak, answer = pipeline_import(stack, path, rows)
    import_id = answer["jobId"]
    started = time.perf_counter()
    status, _ = stack.request("POST", f"/imports/{import_id}/undo")
    if status != 202:
        raise RuntimeError(f"POST /imports/{import_id}/undo answered {status}")
    undone = stack.wait(import_id)
    elapsed = time.perf_counter() - started
    left = stack.sql("SELECT count(*) FROM contacts WHERE import_id = %s", import_id)[0][0]
    if undone["status"] != "undone" or undone["undoneRows"] != answer["insertedRows"] or left:
        raise RuntimeError(f"the undo did not remove every contact it inserted: {undone}, {left} left")
    ratio = elapsed / imported
    results.figures[f"undo_{rows}"] = {
        "rows": rows,
        "import_seconds": imported,
        "undo_seconds": elapsed,
        "ratio": round(ratio, 3),
        "undo": undone,
    }
    results.add(
        f"Undo of a {rows:,}-row import, POST to undone (seconds)",
        f"{elapsed:.2f}",
        f"the import {imported:.2f}",
        f"{ratio:.2f}",
        f"≤ 1.00 {verdict(ratio <= 1.0)}",
    )

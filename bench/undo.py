"""The undo step: undoing a large import, set beside the time the import itself took.

Two undos of the same people: of an ``update`` import that renamed every one of them (each contact
restored from its recorded previous values), then of the import that inserted them (each removed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import data
from bench.stack import Stack


def _undo(stack: Stack, import_id: str) -> tuple[float, dict]:
    """POST the undo and wait for it to end: its seconds and the import as it ended."""
    stack.sql("CHECKPOINT")
    started = time.perf_counter()
    status, _ = stack.request("POST", f"/imports/{import_id}/undo")
    if status != 202:
        raise RuntimeError(f"POST /imports/{import_id}/undo answered {status}")
    undone = stack.wait(import_id)
    return time.perf_counter() - started, undone


def _add(results: Any, key: str, what: str, seconds: tuple[float, float], undone: dict, verdict: Any) -> None:
    imported, elapsed = seconds
    ratio = elapsed / imported
    results.figures[key] = {
        "import_seconds": imported,
        "undo_seconds": elapsed,
        "ratio": round(ratio, 3),
        "undo": undone,
    }
    results.add(
        what,
        f"{elapsed:.2f}",
        f"the import {imported:.2f}",
        f"{ratio:.2f}",
        f"≤ 1.00 {verdict(ratio <= 1.0)}",
    )


def undo_run(
    stack: Stack, results: Any, path: Path, rows: int, pipeline_import: Any, verdict: Any, workdir: Path
) -> None:
    """Import the file, update every contact, undo the update, then the import; each beside its import."""
    imported, _peak, answer = pipeline_import(stack, path, rows)
    import_id = answer["jobId"]

    renamed = data.write_csv(workdir / f"contacts-{rows}-renamed.csv", rows, renamed=" Jr.")
    stack.sql("CHECKPOINT")
    started = time.perf_counter()
    update_id = stack.post_file(renamed, f"bench-{path.stem}", mode="update")
    updated = stack.wait(update_id)
    update_seconds = time.perf_counter() - started
    if updated["status"] != "completed" or updated["updatedRows"] != answer["insertedRows"]:
        raise RuntimeError(f"the update import did not update every contact: {updated}")
    elapsed, restored = _undo(stack, update_id)
    still = stack.sql("SELECT count(*) FROM contacts WHERE name LIKE '% Jr.'")[0][0]
    if restored["status"] != "undone" or restored["undoneRows"] != updated["updatedRows"] or still:
        raise RuntimeError(f"the undo did not restore every contact it updated: {restored}, {still} left")
    _add(
        results,
        f"undo_update_{rows}",
        f"Undo of a {rows:,}-row update import, POST to undone (seconds)",
        (update_seconds, elapsed),
        restored,
        verdict,
    )

    elapsed, undone = _undo(stack, import_id)
    left = stack.sql("SELECT count(*) FROM contacts WHERE import_id = %s", import_id)[0][0]
    if undone["status"] != "undone" or undone["undoneRows"] != answer["insertedRows"] or left:
        raise RuntimeError(f"the undo did not remove every contact it inserted: {undone}, {left} left")
    _add(
        results,
        f"undo_{rows}",
        f"Undo of a {rows:,}-row import, POST to undone (seconds)",
        (imported, elapsed),
        undone,
        verdict,
    )
    results.figures[f"undo_{rows}"]["rows"] = rows

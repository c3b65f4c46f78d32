"""The benchmark still runs, at a tiny size; its figures are not judged here (bench/ is the measure)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ADMIN_URL, DATABASE_NAME, REDIS_URL, ROOT


def test_quick_benchmark_prints_one_table_and_writes_results(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    env = {
        **os.environ,
        "BENCH_ADMIN_DATABASE_URL": ADMIN_URL,
        "BENCH_DATABASE_NAME": f"{DATABASE_NAME}_bench",
        "BENCH_REDIS_URL": REDIS_URL,
    }
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output), "--workdir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    table = [line for line in run.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| measure") and "baseline (same run)" in table[0]
    measures = " ".join(table)
    for measure in (
        "psql \\copy",
        "worker peak RSS",
        "XLSX",
        "ODS",
        "stream POST",
        "cp ",
        "queue latency",
        "webhooks",
        "GET /ops",
        "preview of a",
        "Undo of a 2,000-row import",
        "Undo of a 2,000-row update import",
        "Contacts search",
        "selective searches (3 characters or more, or CJK letters) in turn, 16 connections",
        "two CJK letters, a name",
        "two Latin letters, rare",
        "rejected rows, fix list",
    ):
        assert measure in measures

    results = json.loads(output.read_text())
    ingest = results["ingest_2000"]["import"]
    assert ingest["status"] == "completed"
    assert ingest["processedRows"] == 2000
    assert ingest["insertedRows"] + ingest["duplicateRows"] + ingest["rejectedRows"] == 2000
    assert ingest["rejectedRows"] > 0 and ingest["duplicateRows"] > 0
    assert results["api_load"]["status"]["errors"] == 0
    assert results["webhooks"]["events"] == 50 and results["webhooks"]["deliveries_per_s"] > 0
    ops = results["ops_page"]
    assert ops["rows"]["imports"] >= 500 and ops["rows"]["import_minutes"] > 0
    assert ops["/ops"]["n"] == 5 and ops["/health"]["n"] == 5
    assert results["undo_2000"]["undo"]["undoneRows"] == ingest["insertedRows"]
    restored = results["undo_update_2000"]["undo"]
    assert restored["undoneRows"] == ingest["insertedRows"] and restored["removedRows"] == 0

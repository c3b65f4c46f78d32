"""The search step: contacts search through the API at a size the machine allows, beside a full scan."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from bench.stack import Stack

# (what is searched, the query): a rare email prefix, an email substring, a name substring, a common term.
QUERIES = (
    ("email prefix", "person123456@"),
    ("email substring", "son98765@exa"),
    ("name substring", "ovelace 4242"),
    ("common term, first page", "example"),
)


def _best_ms(run: Any, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def search_run(stack: Stack, results: Any, rows: int) -> None:
    """Store ``rows`` contacts in one statement, then time each search's first page (keyset, 50 rows)."""
    stack.wait_idle()
    stack.sql("TRUNCATE contacts, import_errors")
    stack.sql(
        "INSERT INTO contacts (id, name, email, source, imported_at) "
        "SELECT gen_random_uuid(), 'Ada Lovelace ' || i, "
        "'person' || i || '@example' || mod(i, 97) || '.com', 'bench-search', now() "
        "FROM generate_series(1, %s) AS i",
        rows,
    )
    stack.sql("ANALYZE contacts")
    scan_ms = _best_ms(lambda: stack.sql("SELECT count(*) FROM contacts WHERE name || email LIKE '%zzz%'"))
    figures: dict[str, Any] = {"rows": rows, "full_scan_ms": round(scan_ms, 1)}
    for label, query in QUERIES:
        path = "/contacts?" + urllib.parse.urlencode({"q": query, "after": ""})

        def search(path: str = path) -> None:
            status, answer = stack.request("GET", path)
            if status != 200 or "items" not in answer:
                raise RuntimeError(f"GET {path} answered {status}: {answer}")

        ms = _best_ms(search)
        figures[label] = round(ms, 1)
        results.add(
            f"Contacts search at {rows:,} contacts, {label} (ms, GET first page, best of 5)",
            f"{ms:,.1f}",
            f"full scan {scan_ms:,.1f}",
            f"{ms / scan_ms:.2f}",
            "reported",
        )
    results.figures[f"search_{rows}"] = figures
    stack.sql("TRUNCATE contacts")

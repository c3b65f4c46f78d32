"""The rejected-rows lists of an import with many rejected rows: the fix list and the errors list."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.stack import Stack


def _best_ms(stack: Stack, path: str, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        status, _answer = stack.request("GET", path, headers={"Accept": "text/html"})
        best = min(best, time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
    return best * 1000


def rejected_lists(stack: Stack, results: Any, count: int, pipeline_import: Callable[..., Any]) -> None:
    """Import ``count`` rows that are all rejected; time the first and a deep page of each list.

    Beside the import's own page of status, so the ratio is what the lists add to a plain page.
    """
    path = stack.workdir / f"rejected-{count}.csv"
    with open(path, "w") as f:
        f.write("name,email\n")
        f.writelines(f"Person {n},not-an-email-{n}\n" for n in range(count))
    _elapsed, _peak, answer = pipeline_import(stack, path, count)
    if answer["rejectedRows"] != count:
        raise RuntimeError(f"expected {count} rejected rows: {answer}")
    job = answer["jobId"]
    last_page = stack.request("GET", f"/imports/{job}/errors?page=1")[1]["pages"]
    status_ms = _best_ms(stack, f"/imports/{job}/progress")
    figures: dict[str, Any] = {"rows": count, "progress_ms": round(status_ms, 1)}
    for label, page in (
        ("fix list, first page", f"/imports/{job}/fixes"),
        ("fix list, a keyset page at the end", f"/imports/{job}/fixes?after={count - 20}"),
        ("fix list of one problem, first page", f"/imports/{job}/fixes?problem=Not+a+valid+email+address"),
        ("errors list, first page", f"/imports/{job}/errors?page=1"),
        (f"errors list, the last page ({last_page})", f"/imports/{job}/errors?page={last_page}"),
    ):
        ms = _best_ms(stack, page)
        figures[label] = round(ms, 1)
        results.add(
            f"{count:,} rejected rows, {label} (ms, HTML, best of 5)",
            f"{ms:,.1f}",
            f"the import's progress fragment {status_ms:,.1f}",
            f"{ms / status_ms:.2f}",
            "reported",
        )
    results.figures[f"rejected_lists_{count}"] = figures

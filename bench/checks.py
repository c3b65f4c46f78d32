"""``python -m bench.checks``: the per-value cost of email and phone checks, beside the plain regex."""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from app import emails, phones
from app.validation import EMAIL as PLAIN_REGEX


def _rate(check: Callable[[Any], Any], values: Sequence[Any], repeats: int) -> float:
    """Values checked per second, the best of ``repeats`` passes."""
    return _rates({"": (check, values)}, repeats)[""]


def _rates(checks: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]], repeats: int) -> dict[str, float]:
    """Each check's values per second, the best of ``repeats`` rounds that take turns, so a busy
    moment of a shared machine falls on all of them alike."""
    best = dict.fromkeys(checks, float("inf"))
    for _ in range(repeats):
        for name, (check, values) in checks.items():
            start = time.perf_counter()
            for value in values:
                check(value)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(checks[name][1]) / seconds for name, seconds in best.items()}


def _regex_only(value: str) -> Any:
    """The check the row loop made before addresses were checked with care: strip, lower, match."""
    email = value.strip().lower()
    return len(email) <= 254 and PLAIN_REGEX.fullmatch(email)


def _plain_addresses(n: int, rng: random.Random) -> list[str]:
    domains = ["example.com", "gmail.com", "acme-corp.co.uk", "mail.example.org", "uni.edu", "firm.de"]
    return [f"user.{rng.randrange(10**9)}@{rng.choice(domains)}" for _ in range(n)]


def _careful_addresses(n: int, rng: random.Random) -> list[str]:
    shapes = [
        "José García <jose.{i}@example.com>",
        "mailto:ada.{i}@example.com",
        "jürgen.{i}@münchen.de",
        "王芳{i}@例子.中国",
        "ADA.{i}@Example.COM;",
        "ada.{i}@gmial.com",
        "ada.{i}.example.com",
    ]
    return [rng.choice(shapes).format(i=rng.randrange(10**9)) for _ in range(n)]


def main(argv: Sequence[str] | None = None) -> None:
    """Print rows/s for each check and its ratio to the plain regex measured in the same run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(12)

    plain = _plain_addresses(args.rows, rng)
    careful = _careful_addresses(args.rows // 10, rng)
    rates = _rates(
        {
            "baseline": (_regex_only, plain),
            "fast": (emails.check_email, plain),
            "shortcut": (emails.plain_email, plain),
            "careful": (emails.check_email, careful),
        },
        args.repeats,
    )
    baseline, fast, slow, shortcut = (rates[k] for k in ("baseline", "fast", "careful", "shortcut"))
    print(f"email, plain regex (baseline):   {baseline:>12,.0f} rows/s")
    print(f"email, check_email fast path:    {fast:>12,.0f} rows/s  {fast / baseline:.2f} of baseline")
    print(f"email, check_email careful path: {slow:>12,.0f} rows/s  {slow / baseline:.2f} of baseline")
    print(
        f"email, plain_email (row loop):   {shortcut:>12,.0f} rows/s  {shortcut / baseline:.2f} of baseline"
    )

    numbers = [f"+44 20 7946 {i % 10_000:04d} ext. {i // 10_000}" for i in range(args.rows // 10)]
    phones._normalise.cache_clear()
    start = time.perf_counter()
    for number in numbers:
        phones.normalise_phone(number, "GB")
    cold = (time.perf_counter() - start) / len(numbers)
    cached = 1 / _rate(lambda v: phones.normalise_phone(v, "GB"), numbers[: phones.CACHE_SIZE // 2], 3)
    print(f"phone, first parse of a value:   {cold * 1e6:>12.1f} µs  ({1 / cold:,.0f} values/s)")
    print(f"phone, value seen before:        {cached * 1e6:>12.2f} µs  ({1 / cached:,.0f} values/s)")


if __name__ == "__main__":
    main()

"""``python -m bench.checks``: the per-value cost of email and phone checks, beside their plain baselines."""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from app import emails, phones
from app.validation import EMAIL as PLAIN_REGEX


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

    # Twice the cache's size of distinct numbers: each pass over them misses the cache throughout.
    numbers = _phone_numbers(2 * phones.CACHE_SIZE)
    phone_rates = _rates(
        {
            "careful": (lambda v: phones.careful_e164(*v), numbers),
            "fast": (lambda v: phones.quick_e164(*v), numbers),
            "first": (lambda v: phones.normalise_phone(*v), numbers),
            # The last numbers of a pass stay in the cache until the next pass.
            "again": (lambda v: phones.normalise_phone(*v), numbers[-phones.CACHE_SIZE // 2 :]),
        },
        max(1, args.repeats // 2),
    )
    parsed = phone_rates["careful"]
    for label, key in (
        ("phone, careful path (baseline):  ", "careful"),
        ("phone, quick_e164 fast path:     ", "fast"),
        ("phone, a value's first parse:    ", "first"),
        ("phone, a value seen before:      ", "again"),
    ):
        rate = phone_rates[key]
        print(f"{label}{1e6 / rate:>12.2f} µs  ({rate:,.0f} values/s)  {rate / parsed:.1f}× the careful path")


def _phone_numbers(n: int) -> list[tuple[str, str | None]]:
    """Distinct valid numbers as files write them, with the default region each is read with.

    Spaced E.164, national numbers (British, American), a German one and one with an extension: the
    shapes the fast path reads. ``phonenumbers`` takes all of them through the same full parse.
    """
    shapes = [
        ("+44 20 7{:03d} {:04d}", None),
        ("020 7{:03d} {:04d}", "GB"),
        ("(212) 5{:02d}-{:04d}", "US"),
        ("+49 89 1{:03d} {:04d}", None),
        ("+44 20 7{:03d} {:04d} ext. 12", None),
    ]
    numbers = []
    for i in range(n):
        shape, region = shapes[i % len(shapes)]
        numbers.append((shape.format((i // 10_000) % 100, i % 10_000), region))
    return numbers


if __name__ == "__main__":
    main()

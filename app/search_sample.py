"""The search sample: which part of a search the trigram index is asked for.

The trigram index answers ``ILIKE '%term%'`` by reading the list of contacts of every trigram of
the term, and a long term has a dozen, some of them held by millions of contacts. Its cost is that
of the commonest lists: 15-27 ms for one person's email at 10 million contacts, where the term's
rarest three trigrams find the same contact in under a millisecond. PostgreSQL keeps no statistics
of trigrams, so the worker keeps a sample of the contacts' searched text (``SAMPLE_ROWS`` of them,
drawn again as the table grows), and each web process reads it once a minute at most.

A term the sample finds rare is looked for by its rarest trigrams in the index, and the whole term
is then checked on each contact found, so the answer is exactly the plain search's. A term the
sample finds common, or one it cannot judge, is left to PostgreSQL's own plan.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.extensions import db
from app.maintenance import every
from app.models import utcnow

log = logging.getLogger(__name__)

SAMPLE_ROWS = 50_000
# Below this many contacts every search is fast without a sample, and none is kept.
MIN_CONTACTS = 50_000
# Drawn again when the table has grown or shrunk by this share, or is this old.
DRIFT = 0.2
MAX_AGE = timedelta(days=1)
# Web processes look for a newer sample this often.
CHECK_SECONDS = 60.0
# A term is looked for by its rarest trigrams when those find no more than this many contacts
# for the whole term to be checked on (each costs a read of its row).
CANDIDATES = 5_000
RAREST = 3
# The sampled contacts holding a part that are looked through at most, to judge several parts.
LOOK_THROUGH = 2_000
# pg_trgm's words are runs of letters and digits; a trigram inside one is three of them.
WORD = re.compile(r"[^\W_]+")
# The expression app.contact_search.searched_text names, lower-cased as ILIKE compares it.
SAMPLED_TEXT = "lower(email || E'\\x1f' || name)"
LOCK = 7_318_201  # pg_try_advisory_xact_lock: one worker draws the sample at a time


def trigrams_inside(text: str) -> list[tuple[int, str]]:
    """(position, trigram) of every three letters or digits in a row of ``text``, as pg_trgm reads a LIKE."""
    return [
        (word.start() + i, word.group()[i : i + 3])
        for word in WORD.finditer(text)
        for i in range(len(word.group()) - 2)
    ]


@dataclass
class Sample:
    """Sampled contacts' searched text, lower-cased, one per line; how many hold each trigram; the
    table's size when drawn."""

    texts: str
    trigrams: dict[str, int]
    contacts: int
    made_at: datetime
    rows: int = 0

    def __post_init__(self) -> None:
        self.rows = self.texts.count("\n") + 1

    def contacts_with(self, part: str) -> float:
        """At most about how many contacts hold ``part``: its rarest trigram's count, scaled."""
        held = min((self.trigrams.get(t.lower(), 0) for _, t in trigrams_inside(part)), default=self.rows)
        return held * self.contacts / self.rows

    def contacts_with_all(self, parts: list[str]) -> float:
        """About how many contacts hold every one of ``parts``, judged by the sampled contacts that
        hold the rarest; infinite when that one is too common to look through."""
        parts = sorted((part.lower() for part in parts), key=self.contacts_with)
        rarest, others = parts[0], parts[1:]
        if self.contacts_with(rarest) > LOOK_THROUGH * self.contacts / self.rows:
            return float("inf")
        found, at = 0, self.texts.find(rarest)
        while at >= 0:
            start = self.texts.rfind("\n", 0, at) + 1
            end = self.texts.find("\n", at)
            end = len(self.texts) if end < 0 else end
            found += all(other in self.texts[start:end] for other in others)
            at = self.texts.find(rarest, end)
        return found * self.contacts / self.rows


_loaded: dict[str, tuple[float, Sample | None]] = {}


def forget() -> None:
    """Forget the samples read, so that the next search reads the newest."""
    _loaded.clear()


def current(session: Session) -> Sample | None:
    """The newest sample of this database, read again when the worker has drawn a newer one."""
    key = str(session.get_bind().engine.url)
    checked, sample = _loaded.get(key, (0.0, None))
    if time.monotonic() - checked < CHECK_SECONDS:
        return sample
    made_at = session.execute(text("SELECT made_at FROM search_samples WHERE id = 1")).scalar()
    if made_at is None:
        sample = None
    elif sample is None or sample.made_at != made_at:
        row = session.execute(
            text("SELECT texts, trigrams, contacts, made_at FROM search_samples WHERE id = 1")
        ).one_or_none()
        sample = row and Sample(row.texts, json.loads(row.trigrams), row.contacts, row.made_at)
    _loaded[key] = (time.monotonic(), sample)
    return sample


def rare_parts(session: Session, term: str) -> list[str] | None:
    """The parts of ``term`` to ask the trigram index for, or None to search for the whole term.

    The parts are its rarest trigrams by the sample, adjacent ones joined, or failing those all of
    its trigrams inside words; a trigram at a word's edge (" e", "es ") is left out, being common.
    Every contact that holds the term holds them, and the term is still checked on each contact
    they find, so they are used only while those are few.
    """
    inside = trigrams_inside(term)
    if len(inside) <= 1 or session.get_bind().dialect.name != "postgresql":
        return None
    sample = current(session)
    if sample is None:
        return None
    rarest = sorted(inside, key=lambda found: sample.contacts_with(found[1]))
    for chosen in (rarest[:RAREST], rarest) if len(rarest) > RAREST else (rarest,):
        parts = _joined(term, sorted(at for at, _ in chosen))
        if min(map(sample.contacts_with, parts)) <= CANDIDATES:
            return parts
        if sample.contacts_with_all(parts) <= CANDIDATES:
            return parts
    return None  # the term's trigrams are common even together: PostgreSQL's plan is as good


def _joined(term: str, starts: list[int]) -> list[str]:
    """The parts of ``term`` that hold the trigrams starting at ``starts`` and no others."""
    spans: list[list[int]] = []
    for start in starts:
        if spans and spans[-1][1] >= start + 2:
            spans[-1][1] = max(spans[-1][1], start + 3)
        else:
            spans.append([start, start + 3])
    return [term[start:end] for start, end in spans]


def count_trigrams(texts: list[str]) -> dict[str, int]:
    """How many of ``texts`` hold each trigram."""
    counts: Counter[str] = Counter()
    for line in texts:
        counts.update({t for _, t in trigrams_inside(line)})
    return dict(counts)


def draw(session: Session, minimum: int = MIN_CONTACTS, force: bool = False) -> bool:
    """Draw the sample again if the table has changed enough since the last (or ``force``); True if drawn.

    A table of fewer than ``minimum`` contacts keeps no sample. Several workers may run this at
    once: one draws, the others see the lock taken and leave it.
    """
    if session.get_bind().dialect.name != "postgresql":
        return False
    if not session.execute(text("SELECT pg_try_advisory_xact_lock(:lock)"), {"lock": LOCK}).scalar():
        return False
    contacts = int(
        session.execute(
            text("SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'contacts'::regclass")
        ).scalar()
    )
    if contacts < max(minimum, 1):  # the planner's count is an estimate, and none before ANALYZE
        contacts = session.execute(text("SELECT count(*) FROM contacts")).scalar()
    last = session.execute(text("SELECT contacts, made_at FROM search_samples WHERE id = 1")).one_or_none()
    if contacts < max(minimum, 1):
        if last is not None:
            session.execute(text("DELETE FROM search_samples"))
        session.commit()
        forget()
        return False
    fresh = last is not None and abs(contacts - last.contacts) <= DRIFT * last.contacts
    if fresh and not force and utcnow() - last.made_at < MAX_AGE:
        session.commit()
        return False
    started = time.perf_counter()
    # SYSTEM draws whole pages; all it draws is kept, so every part of the table has its share.
    share = min(100.0, 100.0 * SAMPLE_ROWS / contacts)
    drawn = session.execute(
        text(f"SELECT {SAMPLED_TEXT} FROM contacts TABLESAMPLE SYSTEM (:share)"), {"share": share}
    ).scalars()
    lines = [line.replace("\n", " ") for line in drawn if line]
    session.execute(text("DELETE FROM search_samples"))
    session.execute(
        text(
            "INSERT INTO search_samples (id, contacts, texts, trigrams, made_at) "
            "VALUES (1, :contacts, :texts, :trigrams, :now)"
        ),
        {
            "contacts": contacts,
            "texts": "\n".join(lines),
            "trigrams": json.dumps(count_trigrams(lines), ensure_ascii=False),
            "now": utcnow(),
        },
    )
    session.commit()
    forget()
    log.info(
        "search sample drawn",
        extra={"contacts": contacts, "seconds": round(time.perf_counter() - started, 2)},
    )
    return True


@every("maintenance_interval")
def keep_search_sample() -> None:
    """Draw the search sample again when the contacts have grown or shrunk by a fifth, or daily."""
    draw(db.session)

"""The search sample: which part of a search the trigram index is asked for.

The trigram index answers ``ILIKE '%term%'`` by reading the list of contacts of every trigram of
the term, and a long term has a dozen, some of them held by millions of contacts. Its cost is that
of the commonest lists: 15-27 ms for one person's email at 10 million contacts, where the term's
rarest three trigrams find the same contact in under a millisecond. PostgreSQL keeps no statistics
of trigrams, so the worker keeps a sample of the contacts' searched text (``SAMPLE_ROWS`` of them,
drawn again as the table grows), and each web process reads it once a minute at most.

With the sample's counts each search is planned (``plan``): by its rarest trigrams in the index,
the whole term then checked on each contact found; by reading contacts in id order when many hold
the term; a term of one or two CJK letters by the index of those letters; a rare term of two
Latin letters or digits by the trigrams that hold them with what stands beside them; or as
PostgreSQL plans it, whichever costs least. Every plan finds exactly the contacts the plain search
finds: the sample decides how fast, never what.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
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
# Below this many by PostgreSQL's statistics the contacts are counted, which costs little.
COUNTED_BELOW = 2 * MIN_CONTACTS
# Drawn again when the table has grown or shrunk by this share, or is this old.
DRIFT = 0.2
MAX_AGE = timedelta(days=1)
# Web processes look for a newer sample this often.
CHECK_SECONDS = 60.0
# A term is looked for by its rarest trigrams when those find no more than this many contacts
# for the whole term to be checked on (each costs a read of its row).
CANDIDATES = 5_000
RAREST = 3
# Costs measured at 10 million contacts, against fetching one contact the index found (1.4-2.8 µs):
# reading one in id order (0.5 µs), and one entry of a trigram's list in the index (4 ns).
READ_COST = 0.35
LIST_COST = 0.0015
# A term read for in id order: this many pages' worth of its share are read before looking further.
READ_PAGES = 3
# The sampled contacts holding a part that are looked through at most, to judge several parts.
LOOK_THROUGH = 2_000
# pg_trgm's words are runs of letters and digits; a trigram inside one is three of them.
WORD = re.compile(r"[^\W_]+")
# The expression app.contact_search.searched_text names, lower-cased as ILIKE compares it.
SAMPLED_TEXT = "lower(email || E'\\x1f' || name)"
LOCK = 7_318_201  # pg_try_advisory_xact_lock: one worker draws the sample at a time
# Chinese, Japanese and Korean letters, and the iteration mark 々, as a character class that Python
# and PostgreSQL read alike. Words in these scripts are not spaced, and a name of two letters holds
# no trigram: migration 0018 indexes these letters apart (app.contact_search.cjk_text).
CJK = (
    r"\u3005\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    r"\U00020000-\U0003134f"
)
CJK_RUN = re.compile(f"[{CJK}]+")
# What ends a word beside a term of two letters or digits, as they stand in emails and names (the
# unit separator joins the two): the trigram index holds the pair with one of these, a letter or a
# digit, or the text's end beside it. The rest, a pair between two other characters (the `zt` of
# `Öztürk`) or a letter that lower-cases to ASCII (İ, the Kelvin sign K), is the condition of the
# index of migration 0019 (app.contact_search.pair_conditions).
PAIR_ENDS = r"\x1f .@_+'-"
PAIR_RESIDUE = rf"[^a-zA-Z0-9{PAIR_ENDS}][a-zA-Z0-9]{{2}}[^a-zA-Z0-9{PAIR_ENDS}]|[\u0130\u212a]"
PAIR = re.compile(r"[a-z0-9]{2}")


def _windows(text: str) -> list[str]:
    """Every three characters in a row of ``text``."""
    return [text[i : i + 3] for i in range(len(text) - 2)]


def trigrams_inside(text: str) -> list[tuple[int, str]]:
    """(position, trigram) of every three letters or digits in a row of ``text``, as pg_trgm reads a LIKE."""
    return [
        (word.start() + i, trigram)
        for word in WORD.finditer(text)
        for i, trigram in enumerate(_windows(word.group()))
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
    _shares: dict[str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.rows = self.texts.count("\n") + 1

    def contacts_with(self, part: str) -> float:
        """At most about how many contacts hold ``part``: its rarest trigram's count, scaled."""
        held = min((self.trigrams.get(t.lower(), 0) for _, t in trigrams_inside(part)), default=self.rows)
        return held * self.contacts / self.rows

    def share_holding(self, term: str) -> float:
        """About what share of the contacts hold ``term`` (in any case)."""
        term = term.lower()
        if term not in self._shares:
            if len(self._shares) > 10_000:
                self._shares.clear()
            self._shares[term] = self.texts.count(term) / self.rows
        return self._shares[term]

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


@dataclass(frozen=True)
class Plan:
    """How to look for a term: by some of its parts in the trigram index, by reading the contacts
    in id order, or (neither given) as PostgreSQL plans it."""

    parts: list[str] | None = None
    # The share of the contacts that hold the term, when reading them in id order pays.
    share: float | None = None
    # The runs of CJK letters of a term too short for trigrams, asked of the CJK index.
    cjk: list[str] | None = None
    # A term of two ASCII letters or digits, lower-cased: asked of the trigram index with what
    # stands beside it, and of the index of the few contacts that index cannot answer for.
    pair: str | None = None

    def contacts_to_read(self, page: int) -> int:
        """How many contacts to read in id order to find ``page`` of them, with room to spare."""
        return math.ceil(READ_PAGES * page / self.share) if self.share else 0

    def past_reading(self) -> Plan:
        """How to look for the term past the contacts read in id order."""
        return Plan(cjk=self.cjk, pair=self.pair) if self.cjk or self.pair else PLAIN


PLAIN = Plan()


def plan(session: Session, term: str, page: int = 50) -> Plan:
    """How to look for ``term``, for pages of ``page`` contacts.

    A term whose rarest trigrams (by the sample) are rare is looked for by them, adjacent ones
    joined, and the whole term is checked on each contact they find; so is one whose trigrams are
    rare only together. A trigram at a word's edge (" e", "es ") is never among them, being common.
    A term that many contacts hold costs a read of every one of them if the page is sorted from
    all: reading contacts in id order until a page is found costs less when they are dense enough.
    Every plan finds exactly the contacts the plain search finds.
    """
    if session.get_bind().dialect.name != "postgresql":
        return PLAIN
    sample = current(session)
    if sample is None:
        return PLAIN
    inside = trigrams_inside(term)
    rarest = sorted(inside, key=lambda found: sample.contacts_with(found[1]))
    chosen = [_joined(term, sorted(at for at, _ in rarest[:RAREST]))] if len(inside) > 1 else []
    if chosen and min(map(sample.contacts_with, chosen[0])) <= CANDIDATES:
        return Plan(parts=chosen[0])
    share = sample.share_holding(term)
    reading = READ_COST * page / max(share, 1e-9) < share * sample.contacts
    cjk = cjk_letters(term)
    if cjk:
        return Plan(share=share, cjk=cjk) if reading else Plan(cjk=cjk)
    pair = pair_of(term)
    if reading or pair:
        return Plan(share=share if reading else None, pair=pair)
    # Else the cheapest of the rarest trigrams, all of them, or PostgreSQL's plan of the whole term,
    # counting each trigram's list of contacts read and each contact found in the table.
    if len(inside) > RAREST:
        chosen.append(_joined(term, sorted(at for at, _ in inside)))
    costs = {None: _listed(sample, like_trigrams(term)) + share * sample.contacts}
    for parts in chosen:
        costs[tuple(parts)] = _listed(sample, [t for part in parts for _, t in trigrams_inside(part)])
        costs[tuple(parts)] += sample.contacts_with_all(parts)
    best = min(costs, key=costs.__getitem__)
    return Plan(parts=list(best)) if best else PLAIN


def pair_of(term: str) -> str | None:
    """The term lower-cased, if it is two ASCII letters or digits (which hold no trigram)."""
    lowered = term.lower()
    return lowered if term.isascii() and PAIR.fullmatch(lowered) else None


def cjk_letters(term: str) -> list[str]:
    """The runs of CJK letters of a term that holds no trigram, which the CJK index is asked for."""
    return [] if trigrams_inside(term) else CJK_RUN.findall(term)


def _listed(sample: Sample, trigrams: list[str]) -> float:
    """The cost of reading the index's lists of contacts of ``trigrams``, in contacts found."""
    return LIST_COST * sum(sample.trigrams.get(t, 0) for t in trigrams) * sample.contacts / sample.rows


def _joined(term: str, starts: list[int]) -> list[str]:
    """The parts of ``term`` that hold the trigrams starting at ``starts`` and no others."""
    spans: list[list[int]] = []
    for start in starts:
        if spans and spans[-1][1] >= start + 2:
            spans[-1][1] = max(spans[-1][1], start + 3)
        else:
            spans.append([start, start + 3])
    return [term[start:end] for start, end in spans]


def like_trigrams(term: str) -> list[str]:
    """The trigrams pg_trgm asks its index for to find ``term`` anywhere: those inside words, and
    those of a word's edge ("  w", " wo", "rd ") where the term itself shows the edge."""
    found = []
    for word in WORD.finditer(term.lower()):
        padded = ("  " if word.start() > 0 else "") + word.group() + (" " if word.end() < len(term) else "")
        found += _windows(padded)
    return found


def count_trigrams(texts: list[str]) -> dict[str, int]:
    """How many of ``texts`` hold each trigram, edges of words as pg_trgm indexes them included."""
    counts: Counter[str] = Counter()
    for line in texts:
        held: set[str] = set()
        for word in WORD.findall(line):
            held.update(_windows(f"  {word} "))
        counts.update(held)
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
    contacts = count_contacts(session)
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
    if not lines:  # pages of dead rows only: no sample rather than one that knows nothing
        session.commit()
        forget()
        return False
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


def count_contacts(session: Session) -> int:
    """How many contacts the table holds: as PostgreSQL's statistics count them, or counted when few.

    The statistics count the rows each transaction inserts or deletes as it commits, so they follow
    an import as it goes, and a maintenance tick never reads millions of rows beside the import
    filling them. Where the table holds many more rows than they say (they are lost in a crash, or
    not kept), the table is analyzed: a read of a sample of its rows, not of all of them.
    """
    live = session.execute(
        text("SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'contacts'::regclass")
    ).scalar()
    if live is not None and live >= COUNTED_BELOW:
        return live
    counted = session.execute(
        text("SELECT count(*) FROM (SELECT FROM contacts LIMIT :most) AS few"), {"most": COUNTED_BELOW}
    ).scalar()
    if counted < COUNTED_BELOW:
        return counted
    session.execute(text("ANALYZE contacts"))
    estimate = session.execute(text("SELECT reltuples FROM pg_class WHERE oid = 'contacts'::regclass"))
    return int(estimate.scalar())


@every("maintenance_interval")
def keep_search_sample() -> None:
    """Draw the search sample again when the contacts have grown or shrunk by a fifth, or daily."""
    draw(db.session)

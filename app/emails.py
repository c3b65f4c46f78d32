"""Email addresses as people write them: unwrapped, internationalised, explained when wrong, typos caught."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any, NamedTuple

import idna

from app.readers import cell_text
from app.typos import suggest_domain

EMAIL_MAX = 254
LOCAL_MAX = 64
LABEL_MAX = 63
# Room for a long display name around an address; a longer cell is not worth taking apart.
CELL_MAX = 2000

MISSING = "Email is missing"
INVALID = "Not a valid email address"

# Plain ASCII local@domain.tld, already lower-cased: no leading or trailing dot (doubled dots are
# looked for apart, faster than a lookahead), labels of letters, digits and inner hyphens, a
# top-level domain of letters. Most addresses are this; the rest (Unicode, anything to unwrap or
# explain) take the careful path, and a domain seen for the first time is judged once.
_PLAIN = re.compile(
    r"(?!\.)[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}(?<!\.)"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_ANGLE = re.compile(r"(?s)(.*?)<([^<>]*)>")
_MAILTO = re.compile(r"mailto:", re.IGNORECASE)
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-.")
_DOMAIN_ASCII = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_QUOTES = "\"'“”‘’«»"
# IDNA (RFC 3490) reads these as the dot between labels, as keyboards in East Asia type them.
_IDEOGRAPHIC_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_CODEPOINT = re.compile(r"U\+([0-9A-F]{4,6})")
_SEPARATORS = re.compile(r":::|[;,\n]")
_AROUND_PUNCTUATION = re.compile(r"\s*([@.])\s*")
_SPELLED_OUT = re.compile(r"\s*[(\[{<]\s*(at|dot)\s*[)\]}>]\s*|\s+(at|dot)\s+")


class EmailCheck(NamedTuple):
    """An address as stored, or why it is not one; a typo suggestion and the name that came with it."""

    email: str | None
    error: str | None
    suggestion: str | None
    display_name: str | None


_new_check = tuple.__new__  # made in C: this runs for every row


def check_email(value: Any) -> EmailCheck:
    """The address in a cell, cleaned and checked, or the reason it is not one."""
    text = value if type(value) is str else cell_text(value)
    email = text.strip().lower()
    if email.isascii() and len(email) <= EMAIL_MAX and ".." not in email and _PLAIN.fullmatch(email):
        domain = email.rpartition("@")[2]
        verdict = _plain_domains.get(domain, _UNSEEN)
        if verdict is None:
            return _new_check(EmailCheck, (email, None, None, None))
        return _with_domain(text, email, domain, verdict)
    return _careful(text)


def plain_email(value: str) -> str | None:
    """The stored form of a plain, valid ASCII address with nothing to say about it, else None.

    The row loop's shortcut: a None sends the value to ``check_email``, which explains or suggests.
    """
    email = value.strip().lower()
    plain = email.isascii() and len(email) <= EMAIL_MAX and ".." not in email and _PLAIN.fullmatch(email)
    return email if plain and _plain_domains.get(email.rpartition("@")[2], _UNSEEN) is None else None


class _Verdict(NamedTuple):
    """What a plain ASCII domain needs beyond the fast path: its Unicode form, a suggestion."""

    stored: str | None  # None: not a valid domain after all (a bad xn-- label)
    suggestion: str | None


_UNSEEN = _Verdict(None, None)
# Domain -> None (plainly fine) or its _Verdict; one dictionary look-up a row instead of the work.
_plain_domains: dict[str, _Verdict | None] = {}
_PLAIN_DOMAINS_MAX = 65_536


def _with_domain(text: str, email: str, domain: str, verdict: _Verdict | None) -> EmailCheck:
    """The fast path's answer for a domain seen the first time, written in ACE, or a likely typo."""
    if verdict is _UNSEEN:
        if len(_plain_domains) >= _PLAIN_DOMAINS_MAX:
            _plain_domains.clear()
        stored = _unicode_domain(domain) if "xn--" in domain else domain
        fixed = suggest_domain(stored) if stored else None
        verdict = _Verdict(stored, fixed) if stored != domain or fixed else None
        _plain_domains[domain] = verdict
        if verdict is None:
            return _new_check(EmailCheck, (email, None, None, None))
    if verdict.stored is None:
        return _careful(text)
    local = email[: -len(domain) - 1]
    suggestion = f"{local}@{verdict.suggestion}" if verdict.suggestion else None
    return _new_check(EmailCheck, (f"{local}@{verdict.stored}", None, suggestion, None))


def typo_warning(check: EmailCheck) -> str | None:
    """The warning for an address stored as written with a likely typo, or None."""
    if check.email is None or check.suggestion is None:
        return None
    return f"Email may have a typo: did you mean {check.suggestion}?"


def split_addresses(value: Any) -> list[str]:
    """The addresses in one cell: ``a ::: b`` (Google), ``a; b``, ``a, b``; a name's comma splits nothing."""
    text = (value if type(value) is str else cell_text(value)).strip()
    if not text:
        return []
    if len(text) > CELL_MAX * 10:
        return [text]
    if not _SEPARATORS.search(text):
        words = text.split()
        # "a@x.example b@y.example": addresses side by side; a name among them keeps the cell whole.
        return words if len(words) > 1 and all("@" in word for word in words) else [text]
    pieces: list[str] = []
    separators: list[str] = []
    start = 0
    quoted = angled = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            angled = True
        elif ch == ">" and not quoted:
            angled = False
        elif not quoted and not angled:
            width = 3 if text.startswith(":::", i) else 1 if ch in ";,\n" else 0
            if width:
                pieces.append(text[start:i])
                separators.append(text[i : i + width])
                i = start = i + width
                continue
        i += 1
    pieces.append(text[start:])
    separators.append("")
    # "Lovelace, Ada <ada@example.com>": a piece with no @ is a name cut at its comma.
    addresses: list[str] = []
    pending = ""
    for raw, separator in zip(pieces, separators, strict=True):
        if "@" in raw:
            addresses.append((pending + raw).strip())
            pending = ""
        else:
            pending += raw + separator
    rest = pending.strip(" ,;:\n")
    if rest:
        addresses.append(rest if addresses else text)
    return [a for a in addresses if a]


def _careful(text: str) -> EmailCheck:
    """Unwrap what exports put around an address, then check it part by part."""
    if len(text) > CELL_MAX:
        return EmailCheck(None, f"{INVALID}: it is longer than {EMAIL_MAX} characters", None, None)
    address, display_name = unwrap(text)
    if not address:
        return EmailCheck(None, MISSING, None, display_name)
    email = unicodedata.normalize("NFC", address).lower()
    problem, suggestion = _problem(email)
    if problem:
        message = f"{INVALID}: {problem}"
        if suggestion:
            message += f". Did you mean {suggestion}?"
        return EmailCheck(None, message, suggestion, display_name)
    local, _, domain = email.rpartition("@")
    stored_domain = _unicode_domain(domain)
    if stored_domain is None:
        return EmailCheck(None, f"{INVALID}: the domain “{domain}” is not a valid domain name", None, None)
    email = f"{local}@{stored_domain}"
    fixed = suggest_domain(stored_domain)
    return EmailCheck(email, None, f"{local}@{fixed}" if fixed else None, display_name)


def unwrap(text: str) -> tuple[str, str | None]:
    """The bare address and the display name from ``"Ada" <ada@example.com>``, ``mailto:``, quotes, ``;``."""
    text = text.strip()
    display_name = None
    angle = _ANGLE.fullmatch(text.rstrip(" ;,."))
    if angle:
        display_name = angle.group(1).strip().strip(_QUOTES).strip() or None
        text = angle.group(2)
    for _ in range(3):  # layers come in any order: '"mailto:ada@example.com";'
        before = text
        text = text.strip().rstrip(";,.").strip()
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
            text = text[1:-1]
        if text[:7].lower() == "mailto:":
            text = _MAILTO.sub("", text, count=1).split("?", 1)[0]
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        if text == before:
            break
    return text.strip(), display_name


def _problem(email: str) -> tuple[str | None, str | None]:
    """What makes a normalised address invalid, in words, with a suggested fix when one is plain."""
    if len(split_addresses(email)) > 1:
        return "the cell holds more than one address; give one per column", None
    if any(ch.isspace() for ch in email):
        return "it has a space inside", _spelled_out(email) or _squeezed(email)
    count = email.count("@")
    if count == 0:
        if "\uff20" in email:
            fixed = email.replace("\uff20", "@")
            return "it has a full-width ＠ where an @ belongs", fixed if _problem(fixed)[0] is None else None
        return "it has no @", _spelled_out(email)
    if count > 1:
        return "it has more than one @", None
    local, _, domain = email.partition("@")
    domain = domain.translate(_IDEOGRAPHIC_DOTS)
    if not local:
        return "it has nothing before the @", None
    if not domain:
        return "it has nothing after the @", None
    for ch in local:
        if ch not in _ATEXT and not _unicode_letter_ok(ch):
            return f"it has a character that cannot be in an address: {_named(ch)}", None
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "the part before the @ cannot start or end with a dot or have two dots in a row", None
    if len(local.encode()) > LOCAL_MAX:
        return f"the part before the @ is longer than {LOCAL_MAX} characters", None
    if "." not in domain:
        fixed = suggest_domain(domain)
        return f"the domain “{domain}” has no dot", f"{local}@{fixed}" if fixed else None
    for ch in domain:
        if ch.isascii() and ch not in _DOMAIN_ASCII:
            return f"it has a character that cannot be in an address: {_named(ch)}", None
    labels = domain.split(".")
    if "" in labels:
        return f"the domain “{domain}” has an empty part (a dot at an end, or two in a row)", None
    for label in labels:
        if label.startswith("-") or label.endswith("-"):
            return f"a part of the domain starts or ends with a hyphen (“{label}”)", None
        if len(label) > LABEL_MAX:
            return f"a part of the domain is longer than {LABEL_MAX} characters", None
    top = labels[-1]
    if top.isascii() and not top.startswith("xn--") and (not top.isalpha() or len(top) < 2):
        return f"the domain ends in “.{top}”, which is not a top-level domain", None
    ace = _ace(domain)
    if ace.startswith("!"):
        return ace[1:], None
    if len(local.encode()) + 1 + len(ace) > EMAIL_MAX:
        return f"it is longer than {EMAIL_MAX} characters", None
    return None, None


def _spelled_out(email: str) -> str | None:
    """``ada (at) example (dot) com``, as web pages hide addresses, if it reads as a valid one."""
    if "at" not in email:
        return None
    fixed = _SPELLED_OUT.sub(lambda m: "@" if (m.group(1) or m.group(2)) == "at" else ".", email)
    return fixed if fixed != email and _problem(fixed)[0] is None else None


def _squeezed(email: str) -> str | None:
    """``ada @ example. com`` without the spaces around its @ and dots, if that is a valid address."""
    fixed = _AROUND_PUNCTUATION.sub(r"\1", email)
    return fixed if fixed != email and _problem(fixed)[0] is None else None


def _unicode_letter_ok(ch: str) -> bool:
    """Whether a non-ASCII character may stand in a local part (RFC 6531): not a control or a space."""
    return not ch.isascii() and unicodedata.category(ch)[0] not in "CZ"


def _named(ch: str) -> str:
    """A character as a user can find it: itself when visible, else its code point and name."""
    name = unicodedata.name(ch, "")
    if ch.isprintable() and not ch.isspace() and unicodedata.category(ch)[0] not in "CZM":
        return f"“{ch}”"
    return f"U+{ord(ch):04X} {name}".strip()


@lru_cache(maxsize=8192)
def _ace(domain: str) -> str:
    """The domain's ASCII form for IDNA 2008, or ``!`` and the reason it has none."""
    if domain.isascii() and "xn--" not in domain:
        return domain
    try:
        return idna.encode(domain).decode("ascii")
    except idna.IDNAError as exc:
        found = _CODEPOINT.search(str(exc))
        if found:
            ch = chr(int(found.group(1), 16))
            return f"!the domain has a character that cannot be in a domain name: {_named(ch)}"
        return f"!the domain “{domain}” is not a valid international domain name"
    except UnicodeError:
        return f"!the domain “{domain}” is not a valid international domain name"


@lru_cache(maxsize=8192)
def _unicode_domain(domain: str) -> str | None:
    """The domain in its Unicode form (``xn--mnchen-3ya.de`` reads ``münchen.de``), or None."""
    domain = domain.translate(_IDEOGRAPHIC_DOTS)
    if domain.isascii() and "xn--" not in domain:
        return domain
    try:
        return idna.decode(idna.encode(domain))
    except (idna.IDNAError, UnicodeError):
        return None

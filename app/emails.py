"""Email addresses as people write them: unwrapped, internationalised, explained when wrong, typos caught."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any, NamedTuple

import idna

from app.readers import cell_text

EMAIL_MAX = 254
LOCAL_MAX = 64
LABEL_MAX = 63

MISSING = "Email is missing"
INVALID = "Not a valid email address"

# Plain ASCII local@domain.tld, already lower-cased: no leading or trailing dot (doubled dots are
# looked for apart, faster than a lookahead), labels of letters, digits and inner hyphens, a
# top-level domain of letters. Most addresses are this; an
# address that is not (xn-- labels, Unicode, anything to unwrap or explain) takes the careful path.
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

# Domains people really use: never corrected, and the targets of a suggestion.
WELL_KNOWN_DOMAINS = frozenset(
    str.split(
        """
    gmail.com googlemail.com yahoo.com ymail.com rocketmail.com hotmail.com outlook.com live.com msn.com
    aol.com aim.com icloud.com me.com mac.com protonmail.com proton.me pm.me mail.com email.com gmx.com
    gmx.de gmx.net gmx.at gmx.ch web.de t-online.de freenet.de posteo.de mailbox.org zoho.com
    fastmail.com hey.com tutanota.com tuta.io yandex.com yandex.ru mail.ru rambler.ru qq.com 163.com
    126.com sina.com naver.com daum.net hanmail.net comcast.net verizon.net att.net sbcglobal.net
    bellsouth.net charter.net cox.net earthlink.net btinternet.com sky.com virginmedia.com talktalk.net
    orange.fr free.fr laposte.net wanadoo.fr sfr.fr libero.it virgilio.it tiscali.it alice.it
    bigpond.com optusnet.com.au shaw.ca rogers.com sympatico.ca uol.com.br bol.com.br terra.com.br
    hotmail.co.uk hotmail.fr hotmail.de hotmail.it hotmail.es live.co.uk live.fr live.de outlook.fr
    outlook.de outlook.es yahoo.co.uk yahoo.fr yahoo.de yahoo.es yahoo.it yahoo.ca yahoo.com.au
    yahoo.co.jp yahoo.co.in rediffmail.com example.com example.org example.net
    """
    )
)
# Misspellings seen often enough to name outright; the edit check below finds the rest.
TYPO_DOMAINS = {
    "gmial.com": "gmail.com",
    "gmai.com": "gmail.com",
    "gamil.com": "gmail.com",
    "gmaill.com": "gmail.com",
    "gnail.com": "gmail.com",
    "gmal.com": "gmail.com",
    "gmail.con": "gmail.com",
    "hotmial.com": "hotmail.com",
    "hotmal.com": "hotmail.com",
    "hotmai.com": "hotmail.com",
    "hotmail.con": "hotmail.com",
    "yaho.com": "yahoo.com",
    "yahooo.com": "yahoo.com",
    "yahoo.con": "yahoo.com",
    "outlok.com": "outlook.com",
    "outloo.com": "outlook.com",
    "iclod.com": "icloud.com",
    "icoud.com": "icloud.com",
}
# Slips of the finger on ".com" after the name of a well-known mail provider.
_COM_TYPOS = frozenset(str.split("con cmo cpm vom xom ocm comm om cm co c0m coom comn cim clm"))
_KNOWN_BY_SUFFIX: dict[str, tuple[str, ...]] = {}
for _domain in sorted(WELL_KNOWN_DOMAINS):
    _name, _, _suffix = _domain.partition(".")
    _KNOWN_BY_SUFFIX[_suffix] = (*_KNOWN_BY_SUFFIX.get(_suffix, ()), _name)
_COM_NAMES = frozenset(_KNOWN_BY_SUFFIX["com"])
# Shorter names sit one keystroke from too many real domains (aol.com, aim.com) to guess at.
_EDIT_MIN = 5


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


def split_addresses(value: Any) -> list[str]:
    """The addresses in one cell: ``a ::: b`` (Google), ``a; b``, ``a, b``; a name's comma splits nothing."""
    text = (value if type(value) is str else cell_text(value)).strip()
    if not text:
        return []
    if not _SEPARATORS.search(text):
        return [text]
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


def suggest_domain(domain: str) -> str | None:
    """The well-known domain that ``domain`` is a likely misspelling of, or None."""
    return None if domain in WELL_KNOWN_DOMAINS else _suggestion(domain)


@lru_cache(maxsize=8192)
def _suggestion(domain: str) -> str | None:
    if domain in TYPO_DOMAINS:
        return TYPO_DOMAINS[domain]
    name, dot, suffix = domain.partition(".")
    if not dot:
        # "gmailcom", "gmail": the dot (or the whole ".com") left out.
        bare = domain.removesuffix("com")
        return f"{bare}.com" if bare in _COM_NAMES else None
    if suffix in _COM_TYPOS and "." not in suffix:
        fixed = _close_name(name, "com") or (name if name in _COM_NAMES else None)
        return f"{fixed}.com" if fixed else None
    fixed = _close_name(name, suffix)
    return f"{fixed}.{suffix}" if fixed else None


def _close_name(name: str, suffix: str) -> str | None:
    """The one well-known name under ``suffix`` that ``name`` is a single slip away from."""
    if len(name) < _EDIT_MIN - 1:
        return None
    found = [k for k in _KNOWN_BY_SUFFIX.get(suffix, ()) if len(k) >= _EDIT_MIN and _one_edit(name, k)]
    return found[0] if len(found) == 1 else None


def _one_edit(a: str, b: str) -> bool:
    """Whether one letter added, dropped, changed, or two neighbours swapped, turns ``a`` into ``b``."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and a[diffs[0]] == b[diffs[1]]
            and a[diffs[1]] == b[diffs[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def _careful(text: str) -> EmailCheck:
    """Unwrap what exports put around an address, then check it part by part."""
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
        return "it has a space inside", None
    count = email.count("@")
    if count == 0:
        if "\uff20" in email:
            fixed = email.replace("\uff20", "@")
            return "it has a full-width ＠ where an @ belongs", fixed if _problem(fixed)[0] is None else None
        return "it has no @", None
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
    if isinstance(ace, str) and ace.startswith("!"):
        return ace[1:], None
    if len(local.encode()) + 1 + len(ace) > EMAIL_MAX:
        return f"it is longer than {EMAIL_MAX} characters", None
    return None, None


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

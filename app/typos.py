"""Likely misspellings of well-known mail domains, and the domain each one meant."""

from __future__ import annotations

from functools import lru_cache

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
# Slips of the finger on ".com" and ".net" after the name of a well-known mail provider.
_TLD_TYPOS = {
    "com": frozenset(str.split("con cmo cpm vom xom ocm comm om cm co c0m coom comn cim clm")),
    "net": frozenset(str.split("ner nte bet nett ne nt")),
}
_KNOWN_BY_SUFFIX: dict[str, tuple[str, ...]] = {}
for _domain in sorted(WELL_KNOWN_DOMAINS):
    _name, _, _suffix = _domain.partition(".")
    _KNOWN_BY_SUFFIX[_suffix] = (*_KNOWN_BY_SUFFIX.get(_suffix, ()), _name)
_COM_NAMES = frozenset(_KNOWN_BY_SUFFIX["com"])
# Shorter names sit one keystroke from too many real domains (aol.com, aim.com) to guess at.
_EDIT_MIN = 5


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
    for tld, typos in _TLD_TYPOS.items():
        if suffix in typos:
            fixed = _close_name(name, tld) or (name if name in _KNOWN_BY_SUFFIX[tld] else None)
            return f"{fixed}.{tld}" if fixed else None
    doubled = domain.removesuffix(".com")
    if doubled != domain and doubled in WELL_KNOWN_DOMAINS:
        return doubled  # "gmail.com.com"
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

"""A contact's fields, and which of a file's columns fill them: header synonyms of real exports."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The fields a contact has besides its attributes, in the order the pages show them.
FIELDS = ("name", "email", "phone", "company", "title")
# The parts a name may come in, in the order they are written (family name first for CJK, see join_name).
NAME_PARTS = ("prefix", "first", "middle", "last", "suffix")

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")

NAME_HEADERS = frozenset({"name", "fullname", "contactname", "contact", "displayname", "formattedname"})
PART_HEADERS = {
    "prefix": frozenset({"nameprefix", "prefix", "salutation", "honorificprefix", "honorific"}),
    "first": frozenset({"firstname", "givenname", "forename", "first", "fname"}),
    "middle": frozenset({"middlename", "additionalname", "middle", "middlenames", "middleinitial"}),
    "last": frozenset({"lastname", "surname", "familyname", "last", "lname"}),
    "suffix": frozenset({"namesuffix", "suffix", "honorificsuffix"}),
}
# Google: "E-mail 1 - Value"; Outlook: "E-mail Address", "E-mail 2 Address"; Mailchimp and LinkedIn:
# "Email Address"; HubSpot "Work email"; a vCard's "E-mail". Never "E-mail 1 - Label" nor "E-mail Display
# Name".
_EMAIL_KEY = re.compile(
    r"(?:contact|work|home|personal|private|primary|business|other|secondary|alternate|alternative)?"
    r"e?mail(?:address)?\d*(?:value|address|id)?\d*"
)
# Google "Phone 1 - Value"; Outlook "Mobile Phone", "Business Phone", "Home Phone 2"; HubSpot "Phone Number",
# "Mobile Phone Number"; a vCard's "Phone", "Phone 2". Faxes and pagers are no phone for a contact.
_PHONE_KEY = re.compile(
    r"(primary|mobile|cell|work|business|office|direct|main|companymain|home|personal|other|car)?"
    r"(?:phone|telephone|tel|mobile|cell|cellular)(?:number|no)?\d*(?:value|number)?\d*"
)
# Which phone column to take first when a row has several: the primary, then a plain "Phone", mobile...
_PHONE_RANK = {"primary": 0, None: 1, "mobile": 2, "cell": 2, "home": 4, "personal": 4, "other": 5, "car": 5}
COMPANY_HEADERS = frozenset(
    {
        "company",
        "companyname",
        "organization",
        "organisation",
        "organizationname",
        "organisationname",
        "organization1name",
        "org",
        "accountname",
        "employer",
    }
)
# Outlook's "Title" is the name prefix (its job title is "Job Title"); elsewhere "Title" is the job title.
TITLE_HEADERS = frozenset(
    {
        "jobtitle",
        "position",
        "organizationtitle",
        "organisationtitle",
        "organization1title",
        "role",
        "jobrole",
    }
)
_TITLE = "title"


class MappingError(ValueError):
    """A mapping that does not fit the file: the message says what to change."""


def header_key(header: str) -> str:
    """A header as compared: case, spaces and punctuation do not matter."""
    return _NOT_ALNUM.sub("", str(header).lower())


@dataclass(frozen=True)
class Columns:
    """Which of a file's columns fill which field; every other column is kept in the contact's attributes.

    The name comes from one column or from parts (``parts``: (part, header) in NAME_PARTS order); several
    email or phone columns are candidates in order, the first valid value wins and the others are kept.
    """

    name: str | None = None
    parts: tuple[tuple[str, str], ...] = ()
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    company: str | None = None
    title: str | None = None
    extra: tuple[str, ...] = ()

    @property
    def email(self) -> str | None:
        """The first email column, if any."""
        return self.emails[0] if self.emails else None

    def part(self, role: str) -> str | None:
        """The column of one name part, if the name comes in parts."""
        return dict(self.parts).get(role)

    @property
    def is_plain(self) -> bool:
        """Just a name column and an email column: rows take the fast path of the row loop."""
        return (
            self.name is not None
            and len(self.emails) == 1
            and not (self.parts or self.phones or self.company or self.title or self.extra)
        )

    @property
    def has_name(self) -> bool:
        """Whether any column gives the name."""
        return self.name is not None or bool(self.parts)

    @property
    def mapped(self) -> tuple[str, ...]:
        """The columns that fill a field, in field order."""
        name = (self.name,) if self.name else tuple(header for _, header in self.parts)
        rest = (self.company, self.title)
        return (*name, *self.emails, *self.phones, *(h for h in rest if h))

    def to_dict(self) -> dict[str, Any]:
        """The mapping as JSON: field -> header (a list for a name in parts and for several candidates)."""

        def one_or_list(headers: tuple[str, ...]) -> str | list[str] | None:
            if not headers:
                return None
            return headers[0] if len(headers) == 1 else list(headers)

        return {
            "name": self.name if self.name else [header for _, header in self.parts] or None,
            "email": one_or_list(self.emails),
            "phone": one_or_list(self.phones),
            "company": self.company,
            "title": self.title,
            "attributes": list(self.extra),
        }

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], headers: Iterable[str]) -> Columns:
        """A mapping given as JSON (``to_dict``'s shape) for a file with these headers.

        Raises MappingError saying what does not fit: an unknown field, a header the file lacks, a
        column given twice, no name or no email. Columns the mapping leaves out are kept as attributes.
        """
        headers = list(headers)
        present = set(headers)
        unknown = sorted(set(mapping) - {*FIELDS, "attributes"})
        if unknown:
            raise MappingError(
                f"The mapping names no field {', '.join(unknown)}; the fields are {', '.join(FIELDS)}."
            )
        given: dict[str, tuple[str, ...]] = {}
        for field in FIELDS:
            value = mapping.get(field)
            if value is None or value == "" or value == []:
                continue
            values = (value,) if isinstance(value, str) else value
            if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
                raise MappingError(f"The mapping of {field} must be a column's header or a list of them.")
            if field in ("company", "title") and len(values) > 1:
                raise MappingError(f"{field.capitalize()} takes one column; the mapping gives {len(values)}.")
            for header in values:
                if header not in present:
                    raise MappingError(
                        f"The file has no column {header!r} (mapped to {field}). "
                        f"Its columns are: {', '.join(headers)}."  # every one: the one wanted may be the 31st
                    )
            given[field] = tuple(values)
        used = [header for values in given.values() for header in values]
        twice = sorted({h for h in used if used.count(h) > 1})
        if twice:
            raise MappingError(f"A column can fill one field only; {', '.join(twice)} is mapped twice.")
        if "email" not in given:
            raise MappingError("The mapping must name the email column.")
        if "name" not in given:
            raise MappingError("The mapping must name the name column, or the columns of its parts.")
        names = given["name"]
        name, parts = (
            (names[0], ()) if len(names) == 1 and _part_of(names[0]) is None else (None, _parts(names))
        )
        taken = set(used)
        return cls(
            name=name,
            parts=parts,
            emails=given["email"],
            phones=given.get("phone", ()),
            company=(given.get("company") or (None,))[0],
            title=(given.get("title") or (None,))[0],
            extra=tuple(h for h in headers if h not in taken),
        )


def _part_of(header: str) -> str | None:
    key = header_key(header)
    for role, names in PART_HEADERS.items():
        if key in names:
            return role
    return None


# The parts a list of n name columns stands for when their headers do not say.
_PARTS_BY_COUNT = {
    1: ("first",),
    2: ("first", "last"),
    3: ("first", "middle", "last"),
    4: ("prefix", "first", "middle", "last"),
    5: NAME_PARTS,
}


def _parts(headers: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The name parts of the given columns: by their headers where those say, else by their order."""
    if len(headers) > len(NAME_PARTS):
        raise MappingError(f"A name has at most {len(NAME_PARTS)} parts ({', '.join(NAME_PARTS)}).")
    roles = [_part_of(h) for h in headers]
    if None in roles or len(set(roles)) != len(roles):
        roles = list(_PARTS_BY_COUNT[len(headers)])
    order = {role: i for i, role in enumerate(NAME_PARTS)}
    return tuple(sorted(zip(roles, headers, strict=True), key=lambda pair: order[pair[0]]))  # type: ignore[arg-type]


def find_columns(headers: Iterable[str]) -> Columns:
    """Pick each field's columns by their headers, across the layouts real tools export.

    The first column of a field wins (email and phone: every matching column is a candidate, in
    order); a full-name column wins over name parts; every column left over is kept as an attribute.
    """
    headers = list(headers)
    keys = [header_key(h) for h in headers]
    # Outlook writes the name prefix under "Title" beside "Job Title" and "Suffix".
    title_is_prefix = any(k in TITLE_HEADERS for k in keys) or "suffix" in keys
    name: str | None = None
    parts: dict[str, str] = {}
    emails: list[str] = []
    phones: list[tuple[int, int, str]] = []
    company = title = None
    for position, (header, key) in enumerate(zip(headers, keys, strict=True)):
        if key in NAME_HEADERS:
            name = name or header
            continue
        role = "prefix" if key == _TITLE and title_is_prefix else _part_of(header)
        if role is not None:
            parts.setdefault(role, header)
            continue
        if _EMAIL_KEY.fullmatch(key):
            emails.append(header)
        elif phone := _PHONE_KEY.fullmatch(key):
            phones.append((_PHONE_RANK.get(phone.group(1), 3), position, header))
        elif key in COMPANY_HEADERS and company is None:
            company = header
        elif (key in TITLE_HEADERS or key == _TITLE) and title is None:
            title = header
    found = Columns(
        name=name,
        parts=() if name else tuple((role, parts[role]) for role in NAME_PARTS if role in parts),
        emails=tuple(emails),
        phones=tuple(header for _, _, header in sorted(phones)),
        company=company,
        title=title,
    )
    taken = set(found.mapped)
    return Columns(**{**found.__dict__, "extra": tuple(h for h in headers if h not in taken)})


def _is_cjk(text: str) -> bool:
    """Whether a name part is written in Chinese, Japanese or Korean script."""
    return bool(text) and all(
        "\u4e00" <= ch <= "\u9fff"
        or "\u3400" <= ch <= "\u4dbf"
        or "\u3040" <= ch <= "\u30ff"
        or "\uac00" <= ch <= "\ud7af"
        or "\uf900" <= ch <= "\ufaff"
        for ch in text
    )


def join_name(parts: Mapping[str, str]) -> str:
    """A full name from its non-blank parts, in the order the name is written.

    Chinese, Japanese and Korean names put the family name first with no space (王芳); others
    read prefix, first, middle, last, suffix with spaces between.
    """
    first, middle, last = parts.get("first", ""), parts.get("middle", ""), parts.get("last", "")
    core = [p for p in (first, middle, last) if p]
    if core and all(_is_cjk(p) for p in core):
        words = [parts.get("prefix", ""), last + first + middle, parts.get("suffix", "")]
    else:
        words = [parts.get(role, "") for role in NAME_PARTS]
    return " ".join(w for w in words if w)


def mapping_headers(mapping: Mapping[str, Any] | None, attributes: bool = True) -> list[str]:
    """Every header a mapping (``Columns.to_dict``'s shape) names, in its order; with ``attributes``
    false, only those that fill a field."""
    headers: list[str] = []
    for key, value in (mapping or {}).items():
        if key == "attributes" and not attributes:
            continue
        for header in [value] if isinstance(value, str) else value or []:
            if isinstance(header, str) and header not in headers:
                headers.append(header)
    return headers


class KeysRead:
    """The keys of the JSON items or vCards an import has read, and the mapping they come to.

    Each item is read by its own keys; the import records the mapping of all the keys seen, as a
    review of the file would propose it, so its page says where each key went. Started from the
    mapping an earlier run recorded, so a resumed import forgets none. At most LIMIT keys are
    named (items whose keys are ids would have no end of them).
    """

    LIMIT = 1000

    def __init__(self, recorded: Mapping[str, Any] | None = None) -> None:
        self.keys = dict.fromkeys(mapping_headers(recorded))
        self.grown = False

    def add(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key not in self.keys and len(self.keys) < self.LIMIT:
                self.keys[key] = None
                self.grown = True

    def new_mapping(self) -> dict[str, Any] | None:
        """The mapping of the keys seen, if any came since it was last asked for; else None."""
        if not self.grown:
            return None
        self.grown = False
        return find_columns(self.keys).to_dict()


def describe_mapping(mapping: Mapping[str, Any] | None) -> str | None:
    """Which columns went where, as a person reads it.

    "E-mail 1 - Value → email; Phone 1 - Value → phone; 14 other columns kept as extra fields".
    """
    if not mapping:
        return None
    parts = []
    for field in FIELDS:
        headers = mapping.get(field)
        if not headers:
            continue
        if isinstance(headers, str):
            parts.append(f"{headers} → {field}")
        elif field == "name":
            parts.append(f"{' + '.join(headers)} → name")
        else:
            parts.append(f"{', '.join(headers)} → {field} (the first valid one)")
    kept = len(mapping.get("attributes") or ())
    if kept:
        parts.append(f"{kept} other column{'s' if kept != 1 else ''} kept as extra fields")
    return "; ".join(parts)

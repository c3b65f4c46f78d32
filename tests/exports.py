"""Contact files in the exact public layouts that real tools export, for the tests of every part.

Each function takes people as simple dicts and returns the bytes of a file as that tool writes
it: the same headers in the same order, the same quoting, encoding, line ends, preambles and
footers. A person's keys: ``first``, ``middle``, ``last``, ``prefix``, ``suffix``, ``email``,
``email2``, ``email3``, ``phone``, ``phone2``, ``company``, ``title``, ``notes``, ``tags`` (a list),
``url``, ``street``, ``city``, ``region``, ``postcode``, ``country``, ``birthday`` (ISO date);
every one may be left out. ``email`` is written as given, so a test can put any mistake in it.

``PEOPLE`` are valid contacts with accented and non-Latin names; ``MESSY_PEOPLE`` carry the
mistakes real lists hold, each with ``expect``: ``"valid"`` (stored as is after cleaning),
``"warning"`` (stored, with a suggestion) or ``"rejected"``, and ``stored`` (the address kept).
"""

from __future__ import annotations

import base64
import codecs
import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Person = Mapping[str, Any]

PEOPLE: list[dict[str, Any]] = [
    {
        "first": "José",
        "last": "García",
        "email": "jose.garcia@example.com",
        "phone": "+34 912 34 56 78",
        "company": "Telefónica",
        "title": "Ingeniero",
        "city": "Madrid",
        "country": "Spain",
        "tags": ["Clients"],
    },
    {
        "first": "Jürgen",
        "last": "Müller",
        "email": "juergen.mueller@example.de",
        "email2": "jürgen@münchen.de",
        "phone": "+49 89 1234567",
        "company": "Müller & Söhne GmbH",
        "title": "Geschäftsführer",
        "notes": "Met at the fair, hall 3.\nPrefers email.",
    },
    {
        "first": "芳",
        "last": "王",
        "email": "wang.fang@example.cn",
        "phone": "+86 10 1234 5678",
        "company": "北京科技有限公司",
        "title": "经理",
    },
    {
        "first": "Σωκράτης",
        "last": "Παπαδόπουλος",
        "email": "sokratis@example.gr",
        "phone": "+30 21 0123 4567",
        "company": "Ακρόπολις Α.Ε.",
        "title": "Διευθυντής",
    },
    {
        "first": "Zoë",
        "middle": "Anne",
        "last": "O'Brien",
        "prefix": "Dr.",
        "suffix": "PhD",
        "email": "zoe.obrien@example.ie",
        "phone": "+353 1 234 5678 ext. 12",
        "company": "Trinity Labs, Ltd.",
        "title": "Research Lead",
        "url": "https://example.ie/zoe",
        "street": "1 College Green",
        "city": "Dublin",
        "postcode": "D02",
        "country": "Ireland",
        "birthday": "1985-04-12",
    },
    {
        "first": "Ada",
        "last": "Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "company": "Analytical Engines",
        "title": "Mathematician",
    },
]

MESSY_PEOPLE: list[dict[str, Any]] = [
    {
        "first": "Grace",
        "last": "Hopper",
        "email": "  GRACE.Hopper@Example.COM ",
        "expect": "valid",
        "stored": "grace.hopper@example.com",
    },
    {
        "first": "Alan",
        "last": "Turing",
        "email": "Alan Turing <alan@example.org>",
        "expect": "valid",
        "stored": "alan@example.org",
    },
    {
        "first": "Katherine",
        "last": "Johnson",
        "email": "mailto:katherine@example.com",
        "expect": "valid",
        "stored": "katherine@example.com",
    },
    {
        "first": "Hedy",
        "last": "Lamarr",
        "email": "hedy@example.com ::: hedy.home@example.net",
        "expect": "valid",
        "stored": "hedy@example.com",
    },
    {
        "first": "Marie",
        "last": "Curie",
        "email": "marie@example.fr;",
        "expect": "valid",
        "stored": "marie@example.fr",
    },
    {
        "first": "Émilie",
        "last": "du Châtelet",
        "email": "émilie@example.fr",
        "expect": "valid",
        "stored": "émilie@example.fr",
    },
    {
        "first": "Jürgen",
        "last": "Groß",
        "email": "Jürgen@Bücher.DE",
        "expect": "valid",
        "stored": "jürgen@bücher.de",
    },
    {
        "first": "Linus",
        "last": "Pauling",
        "email": "linus@gmial.com",
        "expect": "warning",
        "stored": "linus@gmial.com",
        "suggestion": "linus@gmail.com",
    },
    {
        "first": "Rosalind",
        "last": "Franklin",
        "email": "rosalind@hotmial.com",
        "expect": "warning",
        "stored": "rosalind@hotmial.com",
        "suggestion": "rosalind@hotmail.com",
    },
    {
        "first": "Niels",
        "last": "Bohr",
        "email": "niels@yahoo.con",
        "expect": "warning",
        "stored": "niels@yahoo.con",
        "suggestion": "niels@yahoo.com",
    },
    {"first": "Lise", "last": "Meitner", "email": "lise.meitner.example.com", "expect": "rejected"},
    {"first": "Enrico", "last": "Fermi", "email": "enrico@@example.com", "expect": "rejected"},
    {"first": "Max", "last": "Planck", "email": "max planck@example.com", "expect": "rejected"},
    {"first": "Paul", "last": "Dirac", "email": "paul@localhost", "expect": "rejected"},
    {"first": "Erwin", "last": "Schrödinger", "email": "erwin@exa(mple).com", "expect": "rejected"},
    {"first": "Werner", "last": "Heisenberg", "email": "", "expect": "rejected"},
]


def _columns(header_line: str) -> list[str]:
    """A header as the export's first line spells it, split into its columns."""
    return header_line.split(",")


_GOOGLE_HEADER = _columns(
    "First Name,Middle Name,Last Name,Phonetic First Name,Phonetic Middle Name,Phonetic Last Name,"
    "Name Prefix,Name Suffix,Nickname,File As,Organization Name,Organization Title,"
    "Organization Department,Birthday,Notes,Photo,Labels,E-mail 1 - Label,E-mail 1 - Value,"
    "E-mail 2 - Label,E-mail 2 - Value,Phone 1 - Label,Phone 1 - Value,Phone 2 - Label,"
    "Phone 2 - Value,Address 1 - Label,Address 1 - Formatted,Address 1 - Street,Address 1 - City,"
    "Address 1 - PO Box,Address 1 - Region,Address 1 - Postal Code,Address 1 - Country,"
    "Address 1 - Extended Address,Website 1 - Label,Website 1 - Value"
)

_GOOGLE_LEGACY_HEADER = _columns(
    "Name,Given Name,Additional Name,Family Name,Yomi Name,Given Name Yomi,Additional Name Yomi,"
    "Family Name Yomi,Name Prefix,Name Suffix,Initials,Nickname,Short Name,Maiden Name,Birthday,"
    "Gender,Location,Billing Information,Directory Server,Mileage,Occupation,Hobby,Sensitivity,"
    "Priority,Subject,Notes,Language,Photo,Group Membership,E-mail 1 - Type,E-mail 1 - Value,"
    "E-mail 2 - Type,E-mail 2 - Value,Phone 1 - Type,Phone 1 - Value,Phone 2 - Type,Phone 2 - Value,"
    "Address 1 - Type,Address 1 - Formatted,Address 1 - Street,Address 1 - City,Address 1 - PO Box,"
    "Address 1 - Region,Address 1 - Postal Code,Address 1 - Country,Address 1 - Extended Address,"
    "Organization 1 - Type,Organization 1 - Name,Organization 1 - Yomi Name,Organization 1 - Title,"
    "Organization 1 - Department,Organization 1 - Symbol,Organization 1 - Location,"
    "Organization 1 - Job Description,Website 1 - Type,Website 1 - Value"
)

_OUTLOOK_COM_HEADER = _columns(
    "First Name,Middle Name,Last Name,Title,Suffix,Nickname,Given Yomi,Surname Yomi,E-mail Address,"
    "E-mail 2 Address,E-mail 3 Address,Home Phone,Home Phone 2,Business Phone,Business Phone 2,"
    "Mobile Phone,Car Phone,Other Phone,Primary Phone,Pager,Business Fax,Home Fax,Other Fax,"
    "Company Main Phone,Callback,Radio Phone,Telex,TTY/TDD Phone,IMAddress,Job Title,Department,"
    "Company,Office Location,Manager's Name,Assistant's Name,Assistant's Phone,Company Yomi,"
    "Business Street,Business City,Business State,Business Postal Code,Business Country/Region,"
    "Home Street,Home City,Home State,Home Postal Code,Home Country/Region,Other Street,Other City,"
    "Other State,Other Postal Code,Other Country/Region,Personal Web Page,Spouse,Schools,Hobby,"
    "Location,Web Page,Birthday,Anniversary,Notes"
)

_OUTLOOK_DESKTOP_HEADER = _columns(
    "Title,First Name,Middle Name,Last Name,Suffix,Company,Department,Job Title,Business Street,"
    "Business Street 2,Business Street 3,Business City,Business State,Business Postal Code,"
    "Business Country/Region,Home Street,Home Street 2,Home Street 3,Home City,Home State,"
    "Home Postal Code,Home Country/Region,Other Street,Other Street 2,Other Street 3,Other City,"
    "Other State,Other Postal Code,Other Country/Region,Assistant's Phone,Business Fax,Business Phone,"
    "Business Phone 2,Callback,Car Phone,Company Main Phone,Home Fax,Home Phone,Home Phone 2,ISDN,"
    "Mobile Phone,Other Fax,Other Phone,Pager,Primary Phone,Radio Phone,TTY/TDD Phone,Telex,Account,"
    "Anniversary,Assistant's Name,Billing Information,Birthday,Business Address PO Box,Categories,"
    "Children,Directory Server,E-mail Address,E-mail Type,E-mail Display Name,E-mail 2 Address,"
    "E-mail 2 Type,E-mail 2 Display Name,E-mail 3 Address,E-mail 3 Type,E-mail 3 Display Name,Gender,"
    "Government ID Number,Hobby,Home Address PO Box,Initials,Internet Free Busy,Keywords,Language,"
    "Location,Manager's Name,Mileage,Notes,Office Location,Organizational ID Number,"
    "Other Address PO Box,Priority,Private,Profession,Referred By,Sensitivity,Spouse,User 1,User 2,"
    "User 3,User 4,Web Page"
)

_HUBSPOT_HEADER = _columns(
    "Record ID,First Name,Last Name,Email,Phone Number,Company Name,Job Title,Lifecycle Stage,"
    "Contact owner,Lead Status,Marketing contact status,Create Date,Last Activity Date"
)

_MAILCHIMP_HEADER = _columns(
    "Email Address,First Name,Last Name,Address,Phone Number,Birthday,MEMBER_RATING,OPTIN_TIME,"
    "OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,"
    "LAST_CHANGED,LEID,EUID,NOTES,TAGS"
)

_LINKEDIN_HEADER = _columns("First Name,Last Name,URL,Email Address,Company,Position,Connected On")
LINKEDIN_PREAMBLE = (
    "Notes:\r\n"
    '"When exporting your connection data, you may notice that some of the email addresses are '
    "missing. You will only see email addresses for connections who have allowed their connections "
    "to see or download their email address using this setting "
    "https://www.linkedin.com/psettings/privacy/email. You can learn more here "
    'https://www.linkedin.com/help/linkedin/answer/261"\r\n'
    "\r\n"
)

_SALESFORCE_HEADER = [
    "Contact Owner",
    "First Name",
    "Last Name",
    "Title",
    "Account Name",
    "Email",
    "Phone",
    "Mailing City",
    "Mailing Country",
    "Created Date",
]


def _get(person: Person, key: str) -> str:
    value = person.get(key)
    return "" if value is None else str(value)


def _full_name(person: Person) -> str:
    """The display name as the tools write it: CJK family name first with no space."""
    first, middle, last = _get(person, "first"), _get(person, "middle"), _get(person, "last")
    if _is_cjk(first + last):
        return last + first
    parts = [_get(person, "prefix"), first, middle, last, _get(person, "suffix")]
    return " ".join(p for p in parts if p)


def _is_cjk(text: str) -> bool:
    return any(
        "\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" for ch in text
    )


def _us_date(iso: str) -> str:
    """2026-12-01 as 12/1/2026, the way US-locale exports write dates."""
    if not iso:
        return ""
    year, month, day = iso.split("-")
    return f"{int(month)}/{int(day)}/{year}"


def _csv_bytes(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    encoding: str = "utf-8",
    bom: bool = False,
    line_end: str = "\r\n",
    quote_all: bool = False,
    before: str = "",
    after: str = "",
    errors: str = "strict",
) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(
        out, lineterminator=line_end, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
    )
    writer.writerow(header)
    writer.writerows(rows)
    text = before + out.getvalue() + after
    data = text.encode(encoding, errors=errors)
    return (codecs.BOM_UTF8 + data) if bom else data


def _people(rows: Iterable[Person] | None) -> list[Person]:
    return list(PEOPLE if rows is None else rows)


def google_contacts_csv(rows: Iterable[Person] | None = None, *, line_end: str = "\r\n") -> bytes:
    """Google Contacts' "Google CSV" export as it is today (UTF-8, no BOM)."""
    out = []
    for p in _people(rows):
        labels = " ::: ".join(["* myContacts", *p.get("tags", [])])
        address = ", ".join(x for x in (_get(p, "street"), _get(p, "city"), _get(p, "country")) if x)
        has_address = bool(address)
        cells = {
            "First Name": _get(p, "first"),
            "Middle Name": _get(p, "middle"),
            "Last Name": _get(p, "last"),
            "Name Prefix": _get(p, "prefix"),
            "Name Suffix": _get(p, "suffix"),
            "File As": "",
            "Organization Name": _get(p, "company"),
            "Organization Title": _get(p, "title"),
            "Birthday": _get(p, "birthday"),
            "Notes": _get(p, "notes"),
            "Labels": labels,
            "E-mail 1 - Label": "* Work" if p.get("email") else "",
            "E-mail 1 - Value": _get(p, "email"),
            "E-mail 2 - Label": "Home" if p.get("email2") else "",
            "E-mail 2 - Value": _get(p, "email2"),
            "Phone 1 - Label": "Mobile" if p.get("phone") else "",
            "Phone 1 - Value": _get(p, "phone"),
            "Phone 2 - Label": "Work" if p.get("phone2") else "",
            "Phone 2 - Value": _get(p, "phone2"),
            "Address 1 - Label": "Work" if has_address else "",
            "Address 1 - Formatted": address,
            "Address 1 - Street": _get(p, "street"),
            "Address 1 - City": _get(p, "city"),
            "Address 1 - Region": _get(p, "region"),
            "Address 1 - Postal Code": _get(p, "postcode"),
            "Address 1 - Country": _get(p, "country"),
            "Website 1 - Label": "Profile" if p.get("url") else "",
            "Website 1 - Value": _get(p, "url"),
        }
        out.append([cells.get(h, "") for h in _GOOGLE_HEADER])
    return _csv_bytes(_GOOGLE_HEADER, out, line_end=line_end)


def google_contacts_legacy_csv(rows: Iterable[Person] | None = None, *, encoding: str = "utf-8") -> bytes:
    """The older Google CSV layout (``Name,Given Name,...,Group Membership,E-mail 1 - Type,...``).

    The old Gmail export wrote it in UTF-16 with a BOM: ``encoding="utf-16"``.
    """
    out = []
    for p in _people(rows):
        groups = " ::: ".join(["* myContacts", *p.get("tags", [])])
        cells = {
            "Name": _full_name(p),
            "Given Name": _get(p, "first"),
            "Additional Name": _get(p, "middle"),
            "Family Name": _get(p, "last"),
            "Name Prefix": _get(p, "prefix"),
            "Name Suffix": _get(p, "suffix"),
            "Birthday": _get(p, "birthday"),
            "Notes": _get(p, "notes"),
            "Group Membership": groups,
            "E-mail 1 - Type": "* Work" if p.get("email") else "",
            "E-mail 1 - Value": _get(p, "email"),
            "E-mail 2 - Type": "Home" if p.get("email2") else "",
            "E-mail 2 - Value": _get(p, "email2"),
            "Phone 1 - Type": "Mobile" if p.get("phone") else "",
            "Phone 1 - Value": _get(p, "phone"),
            "Phone 2 - Type": "Work" if p.get("phone2") else "",
            "Phone 2 - Value": _get(p, "phone2"),
            "Address 1 - Street": _get(p, "street"),
            "Address 1 - City": _get(p, "city"),
            "Address 1 - Region": _get(p, "region"),
            "Address 1 - Postal Code": _get(p, "postcode"),
            "Address 1 - Country": _get(p, "country"),
            "Organization 1 - Type": "Work" if p.get("company") or p.get("title") else "",
            "Organization 1 - Name": _get(p, "company"),
            "Organization 1 - Title": _get(p, "title"),
            "Website 1 - Type": "Profile" if p.get("url") else "",
            "Website 1 - Value": _get(p, "url"),
        }
        if cells["Address 1 - Street"] or cells["Address 1 - City"]:
            cells["Address 1 - Type"] = "Work"
            parts = (_get(p, "street"), _get(p, "city"), _get(p, "country"))
            cells["Address 1 - Formatted"] = "\n".join(x for x in parts if x)
        out.append([cells.get(h, "") for h in _GOOGLE_LEGACY_HEADER])
    return _csv_bytes(_GOOGLE_LEGACY_HEADER, out, encoding=encoding)


def outlook_com_csv(rows: Iterable[Person] | None = None, *, bom: bool = True) -> bytes:
    """Outlook.com's (People) export: UTF-8 with a BOM, three address columns, CRLF."""
    out = []
    for p in _people(rows):
        cells = {
            "First Name": _get(p, "first"),
            "Middle Name": _get(p, "middle"),
            "Last Name": _get(p, "last"),
            "Title": _get(p, "prefix"),
            "Suffix": _get(p, "suffix"),
            "E-mail Address": _get(p, "email"),
            "E-mail 2 Address": _get(p, "email2"),
            "E-mail 3 Address": _get(p, "email3"),
            "Mobile Phone": _get(p, "phone"),
            "Business Phone": _get(p, "phone2"),
            "Job Title": _get(p, "title"),
            "Company": _get(p, "company"),
            "Business Street": _get(p, "street"),
            "Business City": _get(p, "city"),
            "Business State": _get(p, "region"),
            "Business Postal Code": _get(p, "postcode"),
            "Business Country/Region": _get(p, "country"),
            "Web Page": _get(p, "url"),
            "Birthday": _us_date(_get(p, "birthday")),
            "Notes": _get(p, "notes"),
        }
        out.append([cells.get(h, "") for h in _OUTLOOK_COM_HEADER])
    return _csv_bytes(_OUTLOOK_COM_HEADER, out, bom=bom)


def outlook_desktop_csv(rows: Iterable[Person] | None = None) -> bytes:
    """Classic Outlook for Windows (File > Export > CSV): Windows-1252, every field quoted.

    Characters that Windows-1252 cannot hold (王芳, Σωκράτης) come out as ``?``, as Outlook writes them.
    """
    out = []
    for p in _people(rows):
        cells = {
            "Title": _get(p, "prefix"),
            "First Name": _get(p, "first"),
            "Middle Name": _get(p, "middle"),
            "Last Name": _get(p, "last"),
            "Suffix": _get(p, "suffix"),
            "Company": _get(p, "company"),
            "Job Title": _get(p, "title"),
            "Business Street": _get(p, "street"),
            "Business City": _get(p, "city"),
            "Business State": _get(p, "region"),
            "Business Postal Code": _get(p, "postcode"),
            "Business Country/Region": _get(p, "country"),
            "Business Phone": _get(p, "phone2"),
            "Mobile Phone": _get(p, "phone"),
            "Anniversary": "0/0/00",
            "Birthday": _us_date(_get(p, "birthday")) or "0/0/00",
            "Categories": ";".join(p.get("tags", [])),
            "E-mail Address": _get(p, "email"),
            "E-mail Type": "SMTP" if p.get("email") else "",
            "E-mail Display Name": f"{_full_name(p)} ({_get(p, 'email')})" if p.get("email") else "",
            "E-mail 2 Address": _get(p, "email2"),
            "E-mail 2 Type": "SMTP" if p.get("email2") else "",
            "E-mail 2 Display Name": f"{_full_name(p)} ({_get(p, 'email2')})" if p.get("email2") else "",
            "E-mail 3 Address": _get(p, "email3"),
            "E-mail 3 Type": "SMTP" if p.get("email3") else "",
            "Gender": "Unspecified",
            "Initials": "".join(f"{n[0]}." for n in (_get(p, "first"), _get(p, "last")) if n),
            "Notes": _get(p, "notes"),
            "Priority": "Normal",
            "Private": "False",
            "Sensitivity": "Normal",
            "Web Page": _get(p, "url"),
        }
        out.append([cells.get(h, "") for h in _OUTLOOK_DESKTOP_HEADER])
    return _csv_bytes(_OUTLOOK_DESKTOP_HEADER, out, encoding="cp1252", errors="replace", quote_all=True)


def hubspot_csv(rows: Iterable[Person] | None = None) -> bytes:
    """A HubSpot contacts view exported as CSV (UTF-8, the default columns of the view)."""
    out = []
    for number, p in enumerate(_people(rows), start=1):
        out.append(
            [
                str(51_000_000_000 + number),
                _get(p, "first"),
                _get(p, "last"),
                _get(p, "email"),
                _get(p, "phone"),
                _get(p, "company"),
                _get(p, "title"),
                "Lead",
                "Ada Admin",
                "NEW",
                "Marketing contact",
                f"2026-11-{number % 28 + 1:02d} 09:{number % 60:02d}",
                "",
            ]
        )
    return _csv_bytes(_HUBSPOT_HEADER, out, line_end="\n")


def mailchimp_csv(rows: Iterable[Person] | None = None) -> bytes:
    """A Mailchimp audience export (subscribed members): merge fields, then Mailchimp's own columns."""
    out = []
    for number, p in enumerate(_people(rows), start=1):
        address = "  ".join(x for x in (_get(p, "street"), _get(p, "city"), _get(p, "country")) if x)
        tags = ",".join(f'"{t}"' for t in p.get("tags", []))
        out.append(
            [
                _get(p, "email"),
                _get(p, "first"),
                _get(p, "last"),
                address,
                _get(p, "phone"),
                _get(p, "birthday")[5:].replace("-", "/"),
                "2",
                "",
                "",
                f"2026-10-{number % 28 + 1:02d} 10:11:12",
                "203.0.113.7",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                f"2026-10-{number % 28 + 1:02d} 10:11:12",
                str(100_000 + number),
                f"{number:010x}",
                _get(p, "notes"),
                tags,
            ]
        )
    return _csv_bytes(_MAILCHIMP_HEADER, out, line_end="\n")


def linkedin_connections_csv(rows: Iterable[Person] | None = None) -> bytes:
    """LinkedIn's Connections.csv: its ``Notes:`` preamble and a blank line before the header."""
    out = []
    for number, p in enumerate(_people(rows), start=1):
        slug = "-".join(x.lower() for x in (_get(p, "first"), _get(p, "last")) if x) or "member"
        out.append(
            [
                _get(p, "first"),
                _get(p, "last"),
                f"https://www.linkedin.com/in/{slug}-{number}",
                _get(p, "email"),
                _get(p, "company"),
                _get(p, "title"),
                f"{number % 28 + 1:02d} Nov 2026",
            ]
        )
    return _csv_bytes(_LINKEDIN_HEADER, out, before=LINKEDIN_PREAMBLE)


def salesforce_report_csv(
    rows: Iterable[Person] | None = None, *, encoding: str = "utf-8", report: str = "My Contacts"
) -> bytes:
    """A Salesforce report exported "Details Only" as CSV: every field quoted, then its footer lines."""
    out = []
    for p in _people(rows):
        out.append(
            [
                "Ada Admin",
                _get(p, "first"),
                _get(p, "last"),
                _get(p, "title"),
                _get(p, "company"),
                _get(p, "email"),
                _get(p, "phone"),
                _get(p, "city"),
                _get(p, "country"),
                "11/30/2026",
            ]
        )
    footer = (
        '""\n'
        '""\n'
        f'"{report}"\n'
        '"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."\n'
        '"Confidential Information - Do Not Distribute"\n'
        '"Generated By:  Ada Admin  12/1/2026 11:20 AM"\n'
        '"Example Corp"\n'
    )
    return _csv_bytes(_SALESFORCE_HEADER, out, encoding=encoding, line_end="\n", quote_all=True, after=footer)


# --- vCards ------------------------------------------------------------------------------------


def vcard_escape(text: str) -> str:
    """A text value escaped as vCard 3.0 and 4.0 write it."""
    return (
        text.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace(";", "\\;")
        .replace("\r\n", "\n")
        .replace("\n", "\\n")
    )


def fold(line: str, width: int = 75) -> str:
    """A content line folded as RFC 6350 says: CRLF and one space, at most ``width`` octets a line."""
    data = line.encode()
    if len(data) <= width:
        return line
    parts, start, limit = [], 0, width
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # never split a UTF-8 character
            end -= 1
        parts.append(data[start:end].decode())
        start, limit = end, width - 1
    return "\r\n ".join(parts)


def fake_jpeg(size: int) -> bytes:
    """``size`` bytes that start like a JPEG, for embedded photos."""
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
    body = bytes(range(256)) * (size // 256 + 1)
    return (head + body)[:size]


def _photo_lines(photo_size: int, version: str = "3.0") -> list[str]:
    if not photo_size:
        return []
    data = base64.b64encode(fake_jpeg(photo_size)).decode()
    if version == "2.1":
        # 2.1 writes base64 on indented lines after the property and ends it with a blank line.
        chunks = [data[i : i + 76] for i in range(0, len(data), 76)]
        return ["PHOTO;ENCODING=BASE64;JPEG:" + chunks[0], *("  " + c for c in chunks[1:]), ""]
    return [fold("PHOTO;ENCODING=b;TYPE=JPEG:" + data)]


_COUNTRY_CODES = {"Spain": "es", "Ireland": "ie", "Germany": "de", "China": "cn", "Greece": "gr"}


def _n_value(p: Person) -> str:
    parts = ("last", "first", "middle", "prefix", "suffix")
    return ";".join(vcard_escape(_get(p, k)) for k in parts)


def _join_card(lines: list[str], line_end: str = "\r\n") -> str:
    return line_end.join(lines) + line_end


def iphone_vcard(rows: Iterable[Person] | None = None, *, photo_size: int = 0, bom: bool = False) -> bytes:
    """Contacts shared or exported from an iPhone: vCard 3.0, ``type=`` in lower case, grouped labels."""
    out = []
    for p in _people(rows):
        lines = [
            "BEGIN:VCARD",
            "VERSION:3.0",
            "PRODID:-//Apple Inc.//iPhone OS 18.1//EN",
            "N:" + _n_value(p),
            "FN:" + vcard_escape(_full_name(p)),
        ]
        if p.get("company"):
            lines.append("ORG:" + vcard_escape(_get(p, "company")) + ";")
        if p.get("title"):
            lines.append("TITLE:" + vcard_escape(_get(p, "title")))
        group = 0
        # The second address is the preferred one, as when a user marks it so on the phone.
        emails = [e for e in (_get(p, "email"), _get(p, "email2"), _get(p, "email3")) if e]
        for index, email in enumerate(emails):
            if index == 0:
                lines.append(
                    "EMAIL;type=INTERNET;type=HOME" + (";type=pref" if len(emails) == 1 else "") + ":" + email
                )
            else:
                group += 1
                pref = ";type=pref" if index == 1 else ""
                lines.append(f"item{group}.EMAIL;type=INTERNET{pref}:{email}")
                lines.append(f"item{group}.X-ABLabel:_$!<Other>!$_")
        if p.get("phone"):
            lines.append("TEL;type=CELL;type=VOICE;type=pref:" + _get(p, "phone"))
        if p.get("phone2"):
            lines.append("TEL;type=WORK;type=VOICE:" + _get(p, "phone2"))
        if p.get("street") or p.get("city"):
            group += 1
            adr = ";".join(
                vcard_escape(_get(p, k)) for k in ("street", "city", "region", "postcode", "country")
            )
            lines.append(f"item{group}.ADR;type=WORK;type=pref:;;{adr}")
            lines.append(f"item{group}.X-ABADR:" + _COUNTRY_CODES.get(_get(p, "country"), "us"))
        if p.get("url"):
            group += 1
            lines.append(f"item{group}.URL;type=pref:" + _get(p, "url"))
            lines.append(f"item{group}.X-ABLabel:_$!<HomePage>!$_")
        if p.get("notes"):
            lines.append(fold("NOTE:" + vcard_escape(_get(p, "notes"))))
        if p.get("birthday"):
            lines.append("BDAY:" + _get(p, "birthday"))
        lines += _photo_lines(photo_size)
        lines.append("END:VCARD")
        out.append(_join_card(lines))
    data = "".join(out).encode()
    return (codecs.BOM_UTF8 + data) if bom else data


def google_vcard(rows: Iterable[Person] | None = None) -> bytes:
    """Google Contacts' vCard export: 3.0, ``TYPE=`` in upper case, long lines left unfolded."""
    out = []
    for p in _people(rows):
        lines = ["BEGIN:VCARD", "VERSION:3.0", "FN:" + vcard_escape(_full_name(p)), "N:" + _n_value(p)]
        for kind, key in (("WORK", "email"), ("HOME", "email2"), ("OTHER", "email3")):
            if p.get(key):
                lines.append(f"EMAIL;TYPE=INTERNET;TYPE={kind}:{_get(p, key)}")
        if p.get("phone"):
            lines.append("TEL;TYPE=CELL:" + _get(p, "phone"))
        if p.get("phone2"):
            lines.append("TEL;TYPE=WORK:" + _get(p, "phone2"))
        if p.get("street") or p.get("city"):
            adr = ";".join(
                vcard_escape(_get(p, k)) for k in ("street", "city", "region", "postcode", "country")
            )
            lines.append("ADR;TYPE=WORK:;;" + adr)
        if p.get("company"):
            lines.append("ORG:" + vcard_escape(_get(p, "company")))
        if p.get("title"):
            lines.append("TITLE:" + vcard_escape(_get(p, "title")))
        if p.get("birthday"):
            lines.append("BDAY:" + _get(p, "birthday"))
        if p.get("url"):
            # Google escapes the colon of a URL, which vCard 3.0 does not ask for.
            lines.append("item1.URL:" + _get(p, "url").replace(":", "\\:"))
            lines.append("item1.X-ABLabel:Profile")
        if p.get("notes"):
            lines.append("NOTE:" + vcard_escape(_get(p, "notes")))
        lines.append("CATEGORIES:" + ",".join(["myContacts", *p.get("tags", [])]))
        lines.append("END:VCARD")
        out.append(_join_card(lines))
    return "".join(out).encode()


def _escape_21(text: str) -> str:
    """A value escaped as Android's 2.1 writer escapes it: backslashes and semicolons."""
    return text.replace("\\", "\\\\").replace(";", "\\;")


def _qp(text: str, charset: str) -> str:
    """A value in QUOTED-PRINTABLE as vCard 2.1 writers put it, with ``=`` soft line breaks."""
    out, line = [], ""
    for byte in text.replace("\n", "\r\n").encode(charset):
        char = chr(byte) if 33 <= byte <= 126 and byte != 61 else f"={byte:02X}"
        if len(line) + len(char) > 73:
            out.append(line + "=")
            line = ""
        line += char
    return "\r\n".join([*out, line])


def android_vcard(
    rows: Iterable[Person] | None = None, *, charset: str = "UTF-8", photo_size: int = 0
) -> bytes:
    """An Android phone's vCard 2.1 export: non-ASCII values in QUOTED-PRINTABLE with a CHARSET."""
    out = []
    for p in _people(rows):
        lines = ["BEGIN:VCARD", "VERSION:2.1"]
        for prop, value in (
            ("N", ";".join(_escape_21(_get(p, k)) for k in ("last", "first", "middle", "prefix", "suffix"))),
            ("FN", _escape_21(_full_name(p))),
        ):
            if value.isascii() and "\n" not in value:
                lines.append(f"{prop}:{value}")
            else:
                lines.append(f"{prop};CHARSET={charset};ENCODING=QUOTED-PRINTABLE:{_qp(value, charset)}")
        for key, kind in (("phone", "CELL"), ("phone2", "WORK")):
            if p.get(key):
                lines.append(f"TEL;{kind}:{_get(p, key)}")
        for key, kind in (("email", "HOME"), ("email2", "WORK"), ("email3", "OTHER")):
            if p.get(key):
                value = _get(p, key)
                if value.isascii():
                    lines.append(f"EMAIL;{kind}:{value}")
                else:
                    lines.append(
                        f"EMAIL;{kind};CHARSET={charset};ENCODING=QUOTED-PRINTABLE:{_qp(value, charset)}"
                    )
        for prop, key in (("ORG", "company"), ("TITLE", "title"), ("NOTE", "notes")):
            if p.get(key):
                value = _escape_21(_get(p, key))
                if value.isascii() and "\n" not in value:
                    lines.append(f"{prop}:{value}")
                else:
                    lines.append(f"{prop};CHARSET={charset};ENCODING=QUOTED-PRINTABLE:{_qp(value, charset)}")
        lines += _photo_lines(photo_size, "2.1")
        lines.append("END:VCARD")
        out.append(_join_card(lines))
    return "".join(out).encode("ascii")

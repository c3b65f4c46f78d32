"""Which columns of real exports fill which field, and mappings as JSON."""

from __future__ import annotations

import pytest

from app.fields import Columns, KeysRead, MappingError, find_columns, join_name, mapping_headers

GOOGLE = [
    "First Name",
    "Middle Name",
    "Last Name",
    "Phonetic First Name",
    "Phonetic Middle Name",
    "Phonetic Last Name",
    "Name Prefix",
    "Name Suffix",
    "Nickname",
    "File As",
    "Organization Name",
    "Organization Title",
    "Organization Department",
    "Birthday",
    "Notes",
    "Photo",
    "Labels",
    "E-mail 1 - Label",
    "E-mail 1 - Value",
    "E-mail 2 - Label",
    "E-mail 2 - Value",
    "Phone 1 - Label",
    "Phone 1 - Value",
    "Address 1 - Label",
    "Address 1 - Formatted",
]
GOOGLE_LEGACY = [
    "Name",
    "Given Name",
    "Additional Name",
    "Family Name",
    "Yomi Name",
    "Name Prefix",
    "Name Suffix",
    "Nickname",
    "Notes",
    "Group Membership",
    "E-mail 1 - Type",
    "E-mail 1 - Value",
    "E-mail 2 - Type",
    "E-mail 2 - Value",
    "Phone 1 - Type",
    "Phone 1 - Value",
    "Organization 1 - Type",
    "Organization 1 - Name",
    "Organization 1 - Title",
]
OUTLOOK = [
    "Title",
    "First Name",
    "Middle Name",
    "Last Name",
    "Suffix",
    "Company",
    "Department",
    "Job Title",
    "Business Street",
    "Business Fax",
    "Business Phone",
    "Home Phone",
    "Mobile Phone",
    "Pager",
    "Primary Phone",
    "Birthday",
    "E-mail Address",
    "E-mail Type",
    "E-mail Display Name",
    "E-mail 2 Address",
    "E-mail 3 Address",
    "Notes",
]
VCARD = ["Name", "Name Prefix", "First Name", "Middle Name", "Last Name", "Name Suffix", "E-mail", "Phone"]
VCARD += ["Phone 2", "Company", "Title", "ADR", "NOTE"]


def test_google_contacts_current_layout():
    columns = find_columns(GOOGLE)
    assert columns.parts == (
        ("prefix", "Name Prefix"),
        ("first", "First Name"),
        ("middle", "Middle Name"),
        ("last", "Last Name"),
        ("suffix", "Name Suffix"),
    )
    assert columns.emails == ("E-mail 1 - Value", "E-mail 2 - Value")
    assert columns.phones == ("Phone 1 - Value",)
    assert (columns.company, columns.title) == ("Organization Name", "Organization Title")
    assert "E-mail 1 - Label" in columns.extra and "Phonetic First Name" in columns.extra
    assert set(columns.extra) | set(columns.mapped) == set(GOOGLE)


def test_google_contacts_legacy_layout():
    columns = find_columns(GOOGLE_LEGACY)
    assert columns.name == "Name" and columns.parts == ()
    assert columns.emails == ("E-mail 1 - Value", "E-mail 2 - Value")
    assert columns.phones == ("Phone 1 - Value",)
    assert (columns.company, columns.title) == ("Organization 1 - Name", "Organization 1 - Title")
    assert {"Given Name", "Family Name", "E-mail 1 - Type"} <= set(columns.extra)


def test_outlook_title_is_the_name_prefix_and_job_title_the_title():
    columns = find_columns(OUTLOOK)
    assert columns.part("prefix") == "Title" and columns.part("suffix") == "Suffix"
    assert columns.title == "Job Title" and columns.company == "Company"
    assert columns.emails == ("E-mail Address", "E-mail 2 Address", "E-mail 3 Address")
    assert columns.phones == ("Primary Phone", "Mobile Phone", "Business Phone", "Home Phone")
    assert {"E-mail Display Name", "E-mail Type", "Business Fax", "Pager"} <= set(columns.extra)


@pytest.mark.parametrize(
    ("headers", "company", "title"),
    [
        (
            ["First Name", "Last Name", "Email Address", "Company", "Position", "Connected On"],
            "Company",
            "Position",
        ),
        (["Email Address", "First Name", "Last Name", "Address", "Phone Number", "TAGS"], None, None),
        (
            ["First Name", "Last Name", "Email", "Phone Number", "Company Name", "Job Title"],
            "Company Name",
            "Job Title",
        ),
        (
            ["Salutation", "First Name", "Last Name", "Title", "Account Name", "Email", "Phone"],
            "Account Name",
            "Title",
        ),
    ],
    ids=["linkedin", "mailchimp", "hubspot", "salesforce"],
)
def test_company_and_title_across_layouts(headers: list[str], company: str | None, title: str | None):
    columns = find_columns(headers)
    assert (columns.company, columns.title) == (company, title)
    assert columns.email in ("Email Address", "Email") and columns.part("first") == "First Name"


def test_the_vcard_readers_keys():
    columns = find_columns(VCARD)
    assert columns.name == "Name" and columns.emails == ("E-mail",)
    assert columns.phones == ("Phone", "Phone 2")
    assert (columns.company, columns.title) == ("Company", "Title")
    assert columns.extra == (
        "Name Prefix",
        "First Name",
        "Middle Name",
        "Last Name",
        "Name Suffix",
        "ADR",
        "NOTE",
    )


def test_plain_files_are_plain():
    assert find_columns(["Name", "Email"]).is_plain
    assert not find_columns(["Name", "Email", "Notes"]).is_plain
    assert not find_columns(["First", "Email"]).is_plain


def test_a_mapping_goes_to_json_and_back():
    columns = find_columns(GOOGLE)
    as_json = columns.to_dict()
    assert as_json["name"] == ["Name Prefix", "First Name", "Middle Name", "Last Name", "Name Suffix"]
    assert as_json["email"] == ["E-mail 1 - Value", "E-mail 2 - Value"]
    assert as_json["phone"] == "Phone 1 - Value"
    assert Columns.from_dict(as_json, GOOGLE) == columns
    legacy = find_columns(GOOGLE_LEGACY)
    assert Columns.from_dict(legacy.to_dict(), GOOGLE_LEGACY) == legacy


def test_a_mapping_given_by_hand():
    headers = ["Who", "Surname", "Addr", "Tel", "Firm", "Role", "Notes"]
    columns = Columns.from_dict(
        {"name": ["Who", "Surname"], "email": "Addr", "phone": "Tel", "company": "Firm"}, headers
    )
    assert columns.parts == (("first", "Who"), ("last", "Surname"))
    assert columns.emails == ("Addr",) and columns.phones == ("Tel",) and columns.company == "Firm"
    assert columns.title is None and columns.extra == ("Role", "Notes")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"name": "Name", "email": "Mail"}, r"The file has no column 'Mail' \(mapped to email\)"),
        ({"name": "Name"}, "The mapping must name the email column"),
        ({"email": "Email"}, "The mapping must name the name column"),
        ({"name": "Name", "email": "Email", "phone": "Email"}, "Email is mapped twice"),
        ({"name": "Name", "email": "Email", "fax": "Notes"}, "The mapping names no field fax"),
        ({"name": "Name", "email": "Email", "company": ["Notes", "Name"]}, "Company takes one column"),
        ({"name": "Name", "email": 3}, "must be a column's header or a list of them"),
    ],
)
def test_a_mapping_that_does_not_fit_says_why(mapping: dict, message: str):
    with pytest.raises(MappingError, match=message):
        Columns.from_dict(mapping, ["Name", "Email", "Notes"])


def test_names_join_in_order_and_cjk_family_name_first():
    assert (
        join_name({"prefix": "Dr.", "first": "Ada", "last": "Lovelace", "suffix": "PhD"})
        == "Dr. Ada Lovelace PhD"
    )
    assert join_name({"first": "José", "middle": "", "last": "García"}) == "José García"
    assert join_name({"first": "芳", "last": "王"}) == "王芳"
    assert join_name({"first": "민수", "last": "김"}) == "김민수"
    assert join_name({"last": "Lovelace"}) == "Lovelace"


def test_a_mapping_that_misses_names_every_column_of_the_file():
    headers = [f"Column {n}" for n in range(1, 41)]
    with pytest.raises(MappingError) as refused:
        Columns.from_dict({"name": "Column 1", "email": "E-mail 1 - Value"}, headers)
    message = str(refused.value)
    assert "no column 'E-mail 1 - Value'" in message
    assert message.endswith("Column 39, Column 40.") and "…" not in message


def test_the_keys_of_items_read_come_to_one_mapping_and_a_resumed_import_keeps_the_earlier_ones():
    keys = KeysRead()
    assert keys.new_mapping() is None  # nothing read yet
    keys.add(("Name", "E-mail", "Phone"))
    keys.add(("Name", "First Name", "Last Name", "E-mail", "ADR"))
    first = keys.new_mapping()
    assert first == {
        "name": "Name",
        "email": "E-mail",
        "phone": "Phone",
        "company": None,
        "title": None,
        "attributes": ["First Name", "Last Name", "ADR"],
    }
    keys.add(("E-mail", "Name"))
    assert keys.new_mapping() is None  # no key it had not seen: nothing to record again
    # A run that resumes the import starts from what the earlier run recorded.
    resumed = KeysRead(first)
    resumed.add(("Name", "E-mail", "NOTE"))
    assert resumed.new_mapping() == {**first, "attributes": ["First Name", "Last Name", "ADR", "NOTE"]}
    # Items whose keys never repeat (ids as keys) name at most LIMIT of them.
    endless = KeysRead()
    endless.add(("name", "email", *(f"id-{n}" for n in range(3 * KeysRead.LIMIT))))
    assert len(mapping_headers(endless.new_mapping())) == KeysRead.LIMIT

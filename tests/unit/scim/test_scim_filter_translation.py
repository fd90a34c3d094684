"""The filter translator: allow-list, operators, case rules, and values only ever as bound
parameters (a property test over arbitrary strings)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scim2_models import InvalidFilterException
from sqlalchemy import select
from sqlalchemy.dialects import mysql, sqlite

from obsigen.db.scim_models import ScimUser
from obsigen.scim.filters import MAX_NODES, translate
from obsigen.scim.groups import FILTERS as GROUP_FILTERS
from obsigen.scim.users import FILTERS as USER_FILTERS


def sql(filter_: str, dialect: object = None) -> tuple[str, dict[str, object]]:
    compiled = (
        select(ScimUser.id)
        .where(translate(filter_, USER_FILTERS))
        .compile(dialect=dialect or sqlite.dialect())
    )
    return str(compiled), dict(compiled.params)


def test_case_insensitive_attributes_compare_lower_cased() -> None:
    text, params = sql('userName eq "Alice"')
    assert "lower(scim_users.user_name)" in text
    assert "alice" in params.values()


def test_case_exact_attributes_compare_as_binary_on_mysql() -> None:
    text, params = sql('externalId eq "AbC"', mysql.dialect())
    assert "CAST(scim_users.external_id AS BINARY)" in text
    assert "AbC" in params.values()
    text, _ = sql('externalId eq "AbC"')
    assert "lower(" not in text


def test_like_wildcards_are_escaped() -> None:
    _, params = sql('userName co "50%_off"')
    assert any("50/%/_off" in str(value) for value in params.values())


def test_multi_valued_attributes_become_exists() -> None:
    text, _ = sql('emails[type eq "work" and value ew "@x.eu"]')
    assert "EXISTS (SELECT 1" in text
    assert "scim_user_emails.type" in text


def test_not_is_null_safe() -> None:
    # "not (displayName eq x)" must match users without a displayName: the comparison is
    # guarded so it is false, never NULL, on a missing value.
    text, _ = sql('not (displayName eq "x")')
    assert "scim_users.display_name IS NOT NULL AND" in text


@pytest.mark.parametrize(
    "filter_",
    [
        'password eq "x"',
        'emails.display eq "x"',
        'name.honorificPrefix eq "Dr"',
        'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1"',
        "active co true",
        'meta.lastModified co "2020"',
        "userName eq 1",
        "userName gt true",
        'members[value eq "x"]',  # a Groups attribute, not a Users one
        "userName lt null",
        'emails[type eq "work"] eq "x"',
    ],
)
def test_refused(filter_: str) -> None:
    with pytest.raises(InvalidFilterException):
        translate(filter_, USER_FILTERS)


def test_groups_allow_members_only_by_value() -> None:
    translate('members[value eq "x"] or members.value eq "y"', GROUP_FILTERS)
    with pytest.raises(InvalidFilterException):
        translate('members.display eq "x"', GROUP_FILTERS)
    with pytest.raises(InvalidFilterException):
        translate('userName eq "x"', GROUP_FILTERS)


def test_oversized_filters_are_refused() -> None:
    many = " or ".join(f'userName eq "u{i}"' for i in range(MAX_NODES + 1))
    with pytest.raises(InvalidFilterException):
        translate(many, USER_FILTERS)
    with pytest.raises(InvalidFilterException):
        translate('userName eq "' + "a" * 3000 + '"', USER_FILTERS)


OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]
ATTRIBUTES = ["userName", "displayName", "name.givenName", "externalId", "emails.value", "id"]


def _texts(filter_: str) -> list[tuple[str, list[str]]]:
    condition = translate(filter_, USER_FILTERS)
    found = []
    for dialect in (sqlite.dialect(), mysql.dialect()):
        compiled = select(ScimUser.id).where(condition).compile(dialect=dialect)
        found.append((str(compiled), [str(v) for v in compiled.params.values()]))
    return found


@settings(max_examples=300, deadline=None)
@given(
    value=st.text(min_size=1, max_size=40),
    op=st.sampled_from(OPERATORS),
    attribute=st.sampled_from(ATTRIBUTES),
)
def test_values_never_reach_the_sql_text(value: str, op: str, attribute: str) -> None:
    """Whatever the value, the SQL text is the one a harmless value gives: the value only
    ever travels as a bound parameter."""
    try:
        attempted = _texts(f"{attribute} {op} {json.dumps(value)}")
    except InvalidFilterException:
        return  # refused is fine too: nothing was built
    harmless = _texts(f'{attribute} {op} "harmless"')
    for (text, bound), (expected_text, _) in zip(attempted, harmless, strict=True):
        assert text == expected_text
        assert any(value.lower() in b.lower() or value in b or "/" in b for b in bound)

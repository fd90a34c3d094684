"""The record's stored form: what the Redis hash holds, read back from bytes or text."""

from __future__ import annotations

import pytest

from obsigen.sessions.records import (
    RECORD_FIELDS,
    SessionRecord,
    from_fields,
    is_session_id,
    merge_amr,
    normalise_amr,
    to_fields,
)

RECORD = SessionRecord(
    session_id="A" * 22,
    tenant_id="tënant:1",
    user_id="user 7",
    amr=("pwd", "otp"),
    auth_time=1_700_000_100,
    created_at=1_700_000_000,
    expires_at=1_700_043_200,
)


def test_round_trip_through_text_and_bytes() -> None:
    fields = to_fields(RECORD)

    assert tuple(fields) == RECORD_FIELDS
    assert from_fields(fields) == RECORD
    assert from_fields({k.encode(): v.encode() for k, v in fields.items()}) == RECORD


def test_store_private_fields_are_ignored() -> None:
    fields = to_fields(RECORD) | {"rh": "0" * 64, "idle": "1"}
    assert from_fields(fields) == RECORD


def test_the_record_is_immutable() -> None:
    with pytest.raises(AttributeError):
        RECORD.amr = ("pwd",)  # type: ignore[misc]


def test_amr_is_deduplicated_in_first_seen_order() -> None:
    assert normalise_amr(["otp", "pwd", "otp"]) == ("otp", "pwd")
    assert merge_amr(("pwd",), ["hwk", "pwd", "otp"]) == ("pwd", "hwk", "otp")


@pytest.mark.parametrize("value", ["A" * 22, "abc-_" * 4 + "xy"])
def test_session_id_shape_accepted(value: str) -> None:
    assert is_session_id(value)


@pytest.mark.parametrize("value", ["", "A" * 21, "A" * 23, "A" * 21 + ".", "A" * 21 + ":"])
def test_session_id_shape_refused(value: str) -> None:
    assert not is_session_id(value)

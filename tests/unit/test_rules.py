"""Pure rules and keyset pagination: no I/O, no fakes."""

from __future__ import annotations

import base64
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from course_signup.domain import rules
from course_signup.domain.errors import (
    CapacityBelowEnrollmentError,
    InvalidInputError,
    RegistrationClosedError,
)
from course_signup.domain.pagination import PageRequest, decode_cursor, encode_cursor, make_page

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
COURSE_ID_ALPHABET = string.ascii_letters + string.digits + "_-"


# --- e-mail addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice@Example.COM", "alice@example.com"),
        ("  bob@example.com\t", "bob@example.com"),
        ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org"),
    ],
)
def test_normalize_email_trims_and_lower_cases(raw: str, expected: str) -> None:
    assert rules.normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "alice",
        "alice.example.com",
        "@example.com",
        "alice@",
        "@",
        "al ice@example.com",
        "alice@exa mple.com",
        "alice@example\t.com",
        "alice\u2003@example.com",
        "alice@exam\x00ple.com",
        "alice@b@example.com",
        "a" * 243 + "@example.com",  # 255 characters
    ],
)
def test_normalize_email_rejects_what_is_not_an_address(raw: str) -> None:
    with pytest.raises(InvalidInputError):
        rules.normalize_email(raw)


def test_normalize_email_accepts_exactly_254_characters() -> None:
    address = "a" * 242 + "@example.com"
    assert len(address) == 254
    assert rules.normalize_email(f"  {address.upper()}  ") == address


def test_normalize_email_rejects_an_address_that_grows_past_254_characters_when_lower_cased() -> None:
    raw = "İ" * 200 + "@x.com"  # "İ".lower() is two characters: "i" and a combining dot
    assert len(raw) == 206 and len(raw.lower()) == 406
    with pytest.raises(InvalidInputError):
        rules.normalize_email(raw)


def test_normalize_email_measures_the_lower_cased_address_against_the_limit() -> None:
    fits, too_long = "İ" * 124 + "@x.com", "İ" * 125 + "@x.com"
    assert len(rules.normalize_email(fits)) == 254
    with pytest.raises(InvalidInputError):
        rules.normalize_email(too_long)


def test_normalize_email_is_idempotent() -> None:
    once = rules.normalize_email(" Carol@Example.Com ")
    assert rules.normalize_email(once) == once


# --- course ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("cs101", "CS101"), ("CS101", "CS101"), ("Math_255-a", "MATH_255-A"), ("x", "X"), ("a" * 32, "A" * 32)],
)
def test_normalize_course_id_upper_cases(raw: str, expected: str) -> None:
    assert rules.normalize_course_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "a" * 33, "CS 101", " CS101", "CS101\n", "CS101!", "CS/101", "CS.101", "ÇS101", "CS\u0661\u0662", "%43S101"],
)
def test_normalize_course_id_rejects_anything_else(raw: str) -> None:
    with pytest.raises(InvalidInputError):
        rules.normalize_course_id(raw)


@given(st.text(alphabet=COURSE_ID_ALPHABET, min_size=1, max_size=32))
def test_every_valid_course_id_normalises_to_its_upper_case_and_stays_valid(raw: str) -> None:
    normalised = rules.normalize_course_id(raw)
    assert normalised == raw.upper()
    assert rules.normalize_course_id(normalised) == normalised
    assert rules.normalize_course_id(raw.lower()) == normalised


# --- registration window ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opens", "closes", "is_open"),
    [
        (None, None, True),
        (NOON, None, True),  # opens_at is inclusive
        (NOON + timedelta(microseconds=1), None, False),
        (None, NOON, False),  # closes_at is exclusive
        (None, NOON + timedelta(microseconds=1), True),
        (NOON - timedelta(days=1), NOON + timedelta(days=1), True),
        (NOON - timedelta(days=2), NOON - timedelta(days=1), False),
        (NOON + timedelta(days=1), NOON + timedelta(days=2), False),
    ],
)
def test_registration_window_includes_its_opening_and_excludes_its_closing(
    opens: datetime | None, closes: datetime | None, is_open: bool
) -> None:
    assert rules.registration_is_open(opens, closes, at=NOON) is is_open


def test_registration_window_reads_naive_times_as_utc_and_converts_other_zones() -> None:
    assert rules.registration_is_open(NOON.replace(tzinfo=None), None, at=NOON)
    assert not rules.registration_is_open(None, NOON.replace(tzinfo=None), at=NOON)
    # 13:00 in UTC+1 is 12:00 UTC: the window opens exactly now.
    plus_one = datetime(2026, 11, 25, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert rules.registration_is_open(plus_one, None, at=NOON)
    assert not rules.registration_is_open(None, plus_one, at=NOON)


def test_ensure_registration_open_raises_only_outside_the_window() -> None:
    rules.ensure_registration_open(NOON, NOON + timedelta(hours=1), at=NOON)
    with pytest.raises(RegistrationClosedError):
        rules.ensure_registration_open(NOON - timedelta(hours=1), NOON, at=NOON)


def test_window_must_close_after_it_opens() -> None:
    rules.ensure_window_valid(NOON, NOON + timedelta(seconds=1))
    rules.ensure_window_valid(None, NOON)
    rules.ensure_window_valid(NOON, None)
    with pytest.raises(InvalidInputError):
        rules.ensure_window_valid(NOON, NOON)
    with pytest.raises(InvalidInputError):
        rules.ensure_window_valid(NOON, NOON - timedelta(seconds=1))


# --- capacity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "enrolled", "waitlisted", "expected"),
    [
        (None, 5, 3, 3),
        (10, 5, 3, 3),
        (10, 8, 3, 2),
        (10, 10, 3, 0),
        (10, 12, 3, 0),  # never negative, even for an oversold course
        (0, 0, 4, 0),
        (10, 0, 0, 0),
    ],
)
def test_seats_to_promote_fills_free_seats_from_the_waitlist(
    capacity: int | None, enrolled: int, waitlisted: int, expected: int
) -> None:
    assert rules.seats_to_promote(capacity=capacity, enrolled=enrolled, waitlisted=waitlisted) == expected


@given(
    capacity=st.none() | st.integers(min_value=0, max_value=50),
    enrolled=st.integers(min_value=0, max_value=50),
    waitlisted=st.integers(min_value=0, max_value=50),
)
def test_seats_to_promote_never_overfills_nor_exceeds_the_waitlist(
    capacity: int | None, enrolled: int, waitlisted: int
) -> None:
    promote = rules.seats_to_promote(capacity=capacity, enrolled=enrolled, waitlisted=waitlisted)
    assert 0 <= promote <= waitlisted
    if capacity is not None and enrolled <= capacity:
        assert enrolled + promote <= capacity
        # Every free seat is used while anyone is waiting.
        assert promote == waitlisted or enrolled + promote == capacity


def test_capacity_may_not_drop_below_enrollment() -> None:
    rules.ensure_capacity_allowed(None, enrolled=7)
    rules.ensure_capacity_allowed(7, enrolled=7)
    with pytest.raises(CapacityBelowEnrollmentError):
        rules.ensure_capacity_allowed(6, enrolled=7)


def test_seats_left_is_none_when_unlimited_and_never_negative() -> None:
    assert rules.seats_left(None, 3) is None
    assert rules.seats_left(10, 3) == 7
    assert rules.seats_left(3, 5) == 0


# --- cursors --------------------------------------------------------------------------------------

ROSTER_SHAPE = (int, (str, int))
cursor_keys = st.lists(
    st.text(max_size=256) | st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=1, max_size=3
).map(tuple)


@given(cursor_keys)
def test_cursor_round_trips_and_is_url_safe(key: tuple[object, ...]) -> None:
    cursor = encode_cursor(key)
    assert set(cursor) <= set(string.ascii_letters + string.digits + "-_")
    assert decode_cursor(cursor, shape=tuple(type(part) for part in key)) == key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!!",
        "é",
        "a",  # not a whole base64 quantum
        _b64(b"not json"),
        _b64(b'{"a": 1}'),
        _b64(b'"CS101"'),
        _b64(b"[]"),
        _b64(b'["CS101", "CS102"]'),  # too many parts
        _b64(b"[101]"),  # an int where the key is a string
        _b64(b"[1.5]"),
        _b64(b"[true]"),
        _b64(b"[null]"),
        _b64(b'[["CS101"]]'),
        _b64(b"[NaN]"),
        _b64(b"\xff\xfe"),
        encode_cursor(("x" * 257,)),  # longer than any id
    ],
)
def test_decode_cursor_rejects_what_encode_cursor_did_not_make(cursor: str) -> None:
    with pytest.raises(InvalidInputError):
        decode_cursor(cursor, shape=(str,))


def test_decode_cursor_checks_each_part_against_the_shape() -> None:
    assert decode_cursor(encode_cursor((0, "alice@example.com")), shape=ROSTER_SHAPE) == (0, "alice@example.com")
    assert decode_cursor(encode_cursor((1, 7)), shape=ROSTER_SHAPE) == (1, 7)
    for forged in (("0", "alice@example.com"), (0,), (0, "a", "b"), (False, 7), (1, True), (1, None)):
        with pytest.raises(InvalidInputError):
            decode_cursor(encode_cursor(forged), shape=ROSTER_SHAPE)


@pytest.mark.parametrize("key", [(2**63,), (-(2**63) - 1,), (10**30,)])
def test_decode_cursor_rejects_integers_no_database_column_can_hold(key: tuple[int]) -> None:
    with pytest.raises(InvalidInputError):
        decode_cursor(encode_cursor(key), shape=(int,))


def test_make_page_cuts_the_extra_row_and_names_the_last_row_kept() -> None:
    page = make_page(["a", "b", "c"], PageRequest(limit=2), key=lambda row: (row,))
    assert page.items == ["a", "b"]
    assert page.next_after == ("b",)
    assert decode_cursor(page.next_cursor or "", shape=(str,)) == ("b",)


@pytest.mark.parametrize("rows", [[], ["a"], ["a", "b"]])
def test_make_page_has_no_next_cursor_on_the_last_page(rows: list[str]) -> None:
    page = make_page(rows, PageRequest(limit=2), key=lambda row: (row,))
    assert page.items == rows
    assert page.next_after is None
    assert page.next_cursor is None

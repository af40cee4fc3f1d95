"""Relay values on the fleet's wire: JSON, bounded, and malformed input as "bad request"."""

from __future__ import annotations

import time

import pytest

from relay_lang.errors import RelayError
from relay_lang.values import Array
from relay_workers.wire import from_wire, to_wire


def test_a_shared_value_is_written_out_within_a_bound() -> None:
    x = Array([1.0])
    for _ in range(60):  # 2^60 elements once written out as JSON
        x = Array([x, x])
    started = time.monotonic()
    with pytest.raises(RelayError, match="too large to send across the fleet") as err:
        to_wire(x)
    assert err.value.kind == "limit" and time.monotonic() - started < 10


def test_values_round_trip_and_bad_ones_are_bad_requests() -> None:
    value = Array([1.0, Array([2.0, {"a": float("inf"), "b": None, "c": "s", "d": True}])])
    assert from_wire(to_wire(value)) == value
    deep: list = []
    for _ in range(300):
        deep = [deep]
    for bad in ({"$num": "abc"}, {"$server": 5}, deep, object()):
        with pytest.raises(RelayError) as err:
            from_wire(bad)
        assert err.value.kind == "bad request"

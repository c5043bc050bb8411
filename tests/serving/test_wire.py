"""The workers' messages to the inference process: arrays survive the trip exactly, and any
byte string that is not a whole valid message is refused as a WireError (never another
exception, never a wrong array), since the reader closes the connection on exactly that."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.serving.wire import Message, WireError, decode, describe, encode


def forward_message() -> tuple[Message, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = (rng.normal(size=(3, 48)) * 1e8, rng.normal(size=(3, 48, 5)).astype(np.float32))
    return Message(op="forward", id=7, model="demand", version=2, arrays=describe(arrays)), arrays


def test_a_forward_round_trips_exactly() -> None:
    message, arrays = forward_message()
    decoded, got = decode(encode(message, arrays))
    assert decoded == message
    assert [a.dtype for a in got] == [np.float64, np.float32]
    for sent, received in zip(arrays, got, strict=True):
        np.testing.assert_array_equal(sent, received)


def test_an_empty_batch_and_a_message_without_arrays_round_trip() -> None:
    empty = (np.zeros((0, 12)), np.zeros(0))
    message = Message(op="result", id=1, arrays=describe(empty))
    _, got = decode(encode(message, empty))
    assert [a.shape for a in got] == [(0, 12), (0,)]
    release = Message(op="release", model="demand", version=3)
    assert decode(encode(release)) == (release, [])


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1],  # the last array is cut short
        lambda data: data + b"\0",  # a byte after the last array
        lambda data: data[:3],  # not even a header length
        lambda data: b"\xff\xff\xff\x7f" + data[4:],  # a header longer than the message
        lambda data: data.replace(b'"forward"', b'"execute"'),  # an unknown op
        lambda data: data.replace(b'"<f4"', b'"|O1"'),  # an object dtype: never decoded
        lambda data: data.replace(b"[3,48,5]", b"[3,-48,-5]"),  # negative dimensions
    ],
)
def test_a_damaged_message_is_a_wire_error(damage) -> None:  # type: ignore[no-untyped-def]
    message, arrays = forward_message()
    with pytest.raises(WireError):
        decode(damage(encode(message, arrays)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_decode_or_are_a_wire_error(data: bytes) -> None:
    try:
        message, arrays = decode(data)
    except WireError:
        return
    assert len(arrays) == len(message.arrays)

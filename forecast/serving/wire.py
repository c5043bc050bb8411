"""The messages between the serving workers and the shared inference process (one per device):
a JSON header validated by pydantic, then the arrays' raw bytes. No pickle crosses the socket,
so a peer that is not ours (or a torn message) can at worst be refused, never run code.

    [4-byte little-endian header length][header JSON][array 0 bytes][array 1 bytes]...
"""

from __future__ import annotations

import math
import struct
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecast.errors import ForecastError

_LENGTH = struct.Struct("<I")
# Only what the forward pass exchanges: float64 histories, covariates and outputs, float32 features.
Dtype = Literal["<f8", "<f4"]


class WireError(ForecastError):
    """A message that does not decode: the connection that sent it is closed."""


class ArraySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Dtype
    shape: tuple[int, ...] = Field(max_length=4)


class Message(BaseModel):
    """`forward`: run the window arrays [history (B, L), calendar (B, L + K, F), past covariates
    (B, L, P), future-known covariates (B, L + K, Q), static covariates (B, S)] through a version, answered by
    `result` with [mean (B, H), spread (B,)] or by `error`; `release`: the worker unloaded the
    version (no answer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["forward", "release", "result", "error"]
    id: int = 0  # a forward's number within its connection, repeated in the answer
    model: str = ""
    version: int = 0
    error: str = ""
    arrays: tuple[ArraySpec, ...] = ()


def encode(message: Message, arrays: tuple[np.ndarray, ...] = ()) -> bytes:
    contiguous = [
        np.ascontiguousarray(array, dtype=np.dtype(spec.dtype))
        for array, spec in zip(arrays, message.arrays, strict=True)
    ]
    header = message.model_dump_json().encode()
    return b"".join([_LENGTH.pack(len(header)), header, *(array.tobytes() for array in contiguous)])


def describe(arrays: tuple[np.ndarray, ...]) -> tuple[ArraySpec, ...]:
    """The specs of arrays about to be encoded (float64 or float32, little-endian)."""
    return tuple(ArraySpec(dtype="<f4" if array.dtype == np.float32 else "<f8", shape=array.shape) for array in arrays)


def decode(data: bytes) -> tuple[Message, list[np.ndarray]]:
    """The message and its arrays (views on `data`, read-only); WireError for anything else."""
    if len(data) < _LENGTH.size:
        raise WireError(f"a message of {len(data)} bytes has no header")
    (length,) = _LENGTH.unpack_from(data)
    end = _LENGTH.size + length
    if end > len(data):
        raise WireError(f"the header claims {length} bytes, the message holds {len(data) - _LENGTH.size}")
    try:
        message = Message.model_validate_json(data[_LENGTH.size : end])
    except ValidationError as exc:
        raise WireError(f"the header is not a valid message: {exc.errors()[0]['msg']}") from None
    arrays = []
    offset = end
    for spec in message.arrays:
        if any(size < 0 for size in spec.shape):
            raise WireError(f"an array has a negative dimension: {spec.shape}")
        dtype = np.dtype(spec.dtype)
        nbytes = math.prod(spec.shape) * dtype.itemsize
        if offset + nbytes > len(data):
            raise WireError(f"an array of shape {spec.shape} runs past the end of the message")
        arrays.append(np.frombuffer(data, dtype=dtype, count=math.prod(spec.shape), offset=offset).reshape(spec.shape))
        offset += nbytes
    if offset != len(data):
        raise WireError(f"{len(data) - offset} bytes follow the last array")
    return message, arrays

"""Fast JSON for the forecast route's answers: orjson writes them (several times faster than the
standard library on arrays of floats). Requests are parsed by pydantic's own JSON parser
(api/http/routes/forecast.py)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from typing import Any

import orjson
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None elsewhere (musl, macOS: nothing to call)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return getattr(libc, "malloc_trim", None)


_TRIM = _malloc_trim()


def _return_freed_memory() -> None:
    # A large answer's intermediate lists and dicts leave glibc's heap holding pages that no
    # object uses: without this the worker's resident memory stays tens of MB above its rest.
    if _TRIM is not None:
        _TRIM(0)


# Answers with more numbers than this are built and serialised off the event loop (about 10 ms
# of orjson and list building per 100,000 numbers).
RENDER_INLINE_VALUES = 100_000


async def json_answer(build: Callable[[], Any], numbers: int) -> FastJSONResponse:
    """The body `build` returns, as JSON. A large one (more than RENDER_INLINE_VALUES numbers) is
    built and serialised on a worker thread, so the event loop keeps answering /healthz and
    other clients meanwhile, and once it has been sent the memory it took is handed back."""
    if numbers <= RENDER_INLINE_VALUES:
        return FastJSONResponse(build())
    return await asyncio.to_thread(lambda: FastJSONResponse(build(), background=BackgroundTask(_return_freed_memory)))

"""Fast JSON for the forecast route's answers: orjson writes them (several times faster than the
standard library on arrays of floats). Requests are parsed by pydantic's own JSON parser
(api/http/routes/forecast.py)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)

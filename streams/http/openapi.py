"""The API's OpenAPI 3 document: ``openapi.json`` beside this module, served as it is."""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import Any

import orjson


@functools.cache
def document_bytes() -> bytes:
    """The committed document, byte for byte."""
    return files("streams.http").joinpath("openapi.json").read_bytes()


def document() -> dict[str, Any]:
    """The document, parsed."""
    parsed: dict[str, Any] = orjson.loads(document_bytes())
    return parsed

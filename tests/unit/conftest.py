"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from model.serving.text import TextEncoder


@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    """The bundled multilingual text encoder, loaded once (about a second)."""
    return TextEncoder()

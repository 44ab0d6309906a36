"""Shared fixtures. Helper functions live in tests/support.py (tests/ is on sys.path: `from support import ...`)."""

import pytest

from support import free_port


@pytest.fixture
def port():
    """A free TCP port on 127.0.0.1."""
    return free_port()

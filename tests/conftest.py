"""Shared test helpers."""

import os

import pytest


def skip_or_fail(reason: str):
    """Skip with a loud reason on a developer machine; under CI=true a missing component is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required test component missing under CI: {reason}")
    pytest.skip(f"SKIPPED LOUDLY: {reason}")

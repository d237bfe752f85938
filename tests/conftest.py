"""Shared fixtures: where the project's real data lives (../shared/data beside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EARMARK_SHARED", REPO.parent / "shared")) / "data"


def pytest_collection_modifyitems(config, items):
    if not SHARED.is_dir():
        skip = pytest.mark.skip(reason=f"shared data not found at {SHARED} (set EARMARK_SHARED)")
        for item in items:
            if "shared" in item.fixturenames:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def shared() -> Path:
    """The folder holding fsdd/, tts-digits/, instruments/ and bad-audio/."""
    return SHARED

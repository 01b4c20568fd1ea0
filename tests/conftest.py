"""Shared fixtures: tiny generated data, and the real corpora when ../shared/data exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SOUND2SIGHT_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real corpora; tests using it are marked ``realdata`` and skip without it."""
    if not (SHARED_DATA / "audio").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own feature cache, so no test sees another's files."""
    monkeypatch.setenv("SOUND2SIGHT_CACHE", str(tmp_path_factory.mktemp("cache")))

"""Shared fixtures. Async tests run on anyio's pytest plugin over asyncio (``@pytest.mark.anyio``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batcher.workflows import DEFAULT_JOBS_DIR, WorkflowRegistry, load_workflows

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def registry() -> WorkflowRegistry:
    """The workflow definitions shipped in jobs/."""
    return load_workflows(DEFAULT_JOBS_DIR)

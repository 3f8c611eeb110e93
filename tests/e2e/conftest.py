"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from numbind.registry.testing import RunningRegistry

from tests.e2e._bindings import Platform, connect


@pytest.fixture
async def acme(registry_any_store: RunningRegistry) -> AsyncIterator[Platform]:
    """Platform "acme" on a registry with any store, for the test_platform_bindings_* tests."""
    async with connect(registry_any_store, "acme") as p:
        yield p

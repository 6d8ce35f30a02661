from __future__ import annotations

import pytest
from stores import STORES

from omnicli.server.store import Store


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    """A fresh store of each kind: the test runs once per store."""
    return STORES[request.param]()

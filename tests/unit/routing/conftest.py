from __future__ import annotations

import pytest

from domain.catalog import Catalog
from gateway.routing.router import Router
from tests.support.routing import make_router


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.shipped()


@pytest.fixture
def router() -> Router:
    return make_router()

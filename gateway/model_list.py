"""GET /v1/models: the models this gateway can serve right now — every model with a price in
the catalog whose provider is configured — in OpenAI's `list` of `model` objects.

The catalog is read from the event log (PriceBook.Opened events, filtered by topic) and
followed incrementally from the last notification seen, so a call costs one indexed read of
what is new, not a replay."""

from __future__ import annotations

import threading
from typing import Any

from eventsourcing.utils import get_topic

from domain.pricing import PriceBook
from gateway.models import provider_for

NOTIFICATIONS_PER_READ = 1000


class ModelCatalog:
    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._position = 0
        self._models: dict[str, int] = {}  # model -> created (unix seconds)
        self._topic = get_topic(PriceBook.Opened)

    def refresh(self) -> dict[str, int]:
        with self._lock:
            while True:
                notifications = self._app.recorder.select_notifications(
                    start=self._position,
                    limit=NOTIFICATIONS_PER_READ,
                    inclusive_of_start=False,
                    topics=[self._topic],
                )
                for notification in notifications:
                    event = self._app.mapper.to_domain_event(notification)
                    self._models.setdefault(event.model, int(event.timestamp.timestamp()))
                    self._position = notification.id
                if len(notifications) < NOTIFICATIONS_PER_READ:
                    break
            return dict(self._models)


def model_object(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": provider_for(model)}


def list_models(catalog: ModelCatalog, configured_providers: set[str]) -> dict[str, Any]:
    models = catalog.refresh()
    data = [
        model_object(model, created)
        for model, created in sorted(models.items())
        if provider_for(model) in configured_providers
    ]
    return {"object": "list", "data": data}

"""The Faust topics the worker uses; names come from :class:`~streams.settings.Settings`."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.settings import Settings


@dataclass(frozen=True)
class Topics:
    """Topic handles of one app. Values stay raw bytes: the pipeline decodes them itself."""

    events: faust.TopicT


def build_topics(app: faust.App, settings: Settings) -> Topics:
    """Declare the input topic with raw (undecoded) keys and values."""
    events = app.topic(
        settings.events_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    return Topics(events=events)

"""The Faust topics the worker uses; names come from :class:`~streams.settings.Settings`."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.settings import Settings


@dataclass(frozen=True)
class Topics:
    """Topic handles of one app. Values stay raw bytes: the pipeline decodes them itself."""

    inputs: faust.TopicT


def build_topics(app: faust.App, settings: Settings) -> Topics:
    """Declare the agent's input: events and privacy requests, raw keys and values.

    One agent reads both, so an erasure and the user's events are applied by a
    single writer, in order, in the same batches (``streams.pipeline.batch``).
    """
    inputs = app.topic(
        settings.events_topic,
        settings.privacy_requests_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    return Topics(inputs=inputs)

"""A Faust pass-through worker: the framework's own limit, for ``bench/e2e_throughput.py``.

Same Faust settings and batched sends as the worker, but Faust's stock per-record
path batched with ``take_events`` (how the worker read its input before
streams/kafka/transport.py) and no work: each event's bytes go straight to the
recommendations topic.
Configured like a worker, from ``INTENTSTREAM_*`` variables.

Run (the bench does): ``python bench/faust_passthrough.py``
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import faust

from streams.kafka.produce import kafka_producer, send_all
from streams.pipeline.records import OutputRecord
from streams.settings import Settings
from streams.worker.app import faust_options

#: Seconds ``take_events`` waits to fill a batch.
BATCH_WITHIN = 0.02


def main() -> None:
    settings = Settings()
    app = faust.App(settings.app_id, autodiscover=False, **faust_options(settings))
    source = app.topic(settings.events_topic, value_serializer="raw", key_serializer="raw")

    @app.agent(source, name="pass_through")
    async def pass_through(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for events in stream.take_events(settings.batch_max, within=BATCH_WITHIN):
            await send_all(
                kafka_producer(app),
                [
                    OutputRecord(settings.recommendations_topic, e.message.key, e.message.value)
                    for e in events
                ],
            )
            yield None

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()

"""A Faust transport for the Tansu broker: aiokafka with a short fetch wait.

Tansu does not answer a waiting fetch when new records arrive; it answers when
``fetch_max_wait_ms`` runs out. Faust hard-codes 1,500 ms, which put the demo's
median event-to-recommendation latency near 420 ms on Tansu against 22 ms on
Apache Kafka (docs/brokers.md). Registered as the ``tansu://`` scheme through
the ``faust.transports`` entry point in pyproject.toml.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
from faust.transport.drivers import aiokafka as aiokafka_driver

#: Longest a fetch waits on Tansu; an idle consumer then polls 50 times a second.
TANSU_FETCH_MAX_WAIT_MS = 20


class TansuConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """The aiokafka consumer thread, with the fetch wait lowered before it starts."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its Fetcher at start(); Faust offers no setting for it.
        consumer._fetch_max_wait_ms = TANSU_FETCH_MAX_WAIT_MS
        return consumer


class TansuConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer using :class:`TansuConsumerThread`."""

    def _new_consumer_thread(self) -> TansuConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(aiokafka_driver.Transport):
    """Faust's aiokafka transport for ``tansu://`` broker URLs."""

    Consumer: ClassVar[type[TansuConsumer]] = TansuConsumer

"""The Python client of intentstream: send events and erasure requests, read recommendations.

``EventProducer`` checks each event as the worker will and keys it by user;
``RecommendationConsumer`` yields typed recommendations. docs/producing.md and
docs/consuming.md show both.
"""

from streams.client.consumer import RecommendationConsumer
from streams.client.delivery import Delivered, DeliveryFailure, DeliveryReport
from streams.client.errors import (
    ClientError,
    DeliveryError,
    InvalidEventError,
    InvalidRecommendationError,
)
from streams.client.partitioner import partition_for
from streams.client.producer import EventProducer
from streams.client.recommendation import Recommendation, ScoredItem

__all__ = [
    "ClientError",
    "Delivered",
    "DeliveryError",
    "DeliveryFailure",
    "DeliveryReport",
    "EventProducer",
    "InvalidEventError",
    "InvalidRecommendationError",
    "Recommendation",
    "RecommendationConsumer",
    "ScoredItem",
    "partition_for",
]

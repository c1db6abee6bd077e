"""The worker's HTTP API: each user's latest list, personalised search, probes (docs/http-api.md).

Served by every worker in its own event loop (``service.py``); a request about a
user is answered by the worker that owns the user's partition of the events
topic, and forwarded there by any other (``routing.py``, ``proxy.py``).
"""

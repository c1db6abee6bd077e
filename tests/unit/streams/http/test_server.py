"""The API's routes, errors, authentication, limits and forwarding, over a dict backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from tests.unit.streams.http.conftest import AUTH, DictBackend, recommendation

Serve = Callable[..., Any]


def lone(**lists: Any) -> DictBackend:
    """A worker owning both partitions, holding ``lists``."""
    return DictBackend(lists=dict(lists), owners={0: "http://self:1", 1: "http://self:1"})


async def test_a_held_list_is_answered_as_the_topic_carried_it(serve: Serve) -> None:
    api = await serve(lone(u1=recommendation("u1")))
    response = await api.client.get("/v1/users/u1/recommendations", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == recommendation("u1")


async def test_no_list_is_a_404_with_a_json_error(serve: Serve) -> None:
    api = await serve(lone())
    response = await api.client.get("/v1/users/nobody/recommendations", headers=AUTH)
    assert response.status == 404
    body = await response.json()
    assert body["error"] == "no_list" and "nobody" not in body["detail"]


async def test_a_user_id_with_reserved_characters_round_trips(serve: Serve) -> None:
    user = "a/b c?d#é"
    api = await serve(lone(**{user: recommendation(user)}))
    url = f"/v1/users/{quote(user, safe='')}/recommendations"
    response = await api.client.get(url, headers=AUTH)
    assert response.status == 200 and (await response.json())["user_id"] == user


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Basic eDp5"}],
)
async def test_v1_routes_refuse_a_missing_or_wrong_token(
    serve: Serve, headers: dict[str, str]
) -> None:
    api = await serve(lone(u1=recommendation("u1")))
    got = await api.client.get("/v1/users/u1/recommendations", headers=headers)
    posted = await api.client.post("/v1/search", json={"user_id": "u1", "q": 1}, headers=headers)
    for response in (got, posted):
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["error"] == "unauthorized"


async def test_without_a_token_configured_only_the_probes_and_the_document_answer(
    serve: Serve,
) -> None:
    api = await serve(lone(u1=recommendation("u1")), token=None)
    response = await api.client.get("/v1/users/u1/recommendations", headers=AUTH)
    assert response.status == 403 and (await response.json())["error"] == "api_disabled"
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await api.client.get(path)).status == 200


async def test_probes_need_no_token_and_readyz_says_when_not_ready(serve: Serve) -> None:
    backend = lone()
    api = await serve(backend)
    assert await (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["ready"] is True
    backend.is_ready = False
    assert (await api.client.get("/readyz")).status == 503
    refused = await api.client.get("/v1/users/u1/recommendations", headers=AUTH)
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"


async def test_rebalancing_answers_503_with_retry_after(serve: Serve) -> None:
    api = await serve(DictBackend(owners=None))
    response = await api.client.get("/v1/users/u1/recommendations", headers=AUTH)
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert (await response.json())["error"] == "unavailable"


async def test_a_client_over_its_rate_gets_429_with_retry_after(serve: Serve) -> None:
    api = await serve(lone(u1=recommendation("u1")), rate_per_second=0.5, burst=2)
    statuses = [
        (await api.client.get("/v1/users/u1/recommendations", headers=AUTH)).status
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    refused = await api.client.get("/v1/users/u1/recommendations", headers=AUTH)
    assert refused.headers["Retry-After"] == "2"
    assert (await refused.json())["error"] == "rate_limited"
    assert (await api.client.get("/healthz")).status == 200  # probes are not limited


async def test_wrong_tokens_are_rate_limited_too_even_claiming_to_be_a_worker(
    serve: Serve,
) -> None:
    api = await serve(lone(), rate_per_second=0.5, burst=1)
    bad = {"Authorization": "Bearer wrong-token-0123456789", "X-Intentstream-Forwarded": "1"}
    first = await api.client.get("/v1/users/u1/recommendations", headers=bad)
    second = await api.client.get("/v1/users/u1/recommendations", headers=bad)
    assert (first.status, second.status) == (401, 429)


async def test_a_body_over_the_limit_is_413(serve: Serve) -> None:
    api = await serve(lone(), max_body_bytes=1024)
    body = {"user_id": "u1", "query": "x" * 2000}
    response = await api.client.post("/v1/search", json=body, headers=AUTH)
    assert response.status == 413 and (await response.json())["error"] == "too_large"


async def test_search_answers_in_the_recommendation_shape_with_k_checked(serve: Serve) -> None:
    backend = lone()
    api = await serve(backend, top_k=5)
    ok = await api.client.post(
        "/v1/search", json={"user_id": "u1", "query": "shoes", "k": 3}, headers=AUTH
    )
    assert ok.status == 200 and (await ok.json())["context"] == "search"
    default = await api.client.post(
        "/v1/search", json={"user_id": "u1", "query": "shoes"}, headers=AUTH
    )
    assert default.status == 200
    assert backend.searches == [("u1", "shoes", 3), ("u1", "shoes", 5)]
    for bad in (
        {"user_id": "u1", "query": "shoes", "k": 6},
        {"user_id": "u1", "query": "shoes", "k": True},
        {"user_id": "u1", "query": ""},
        {"user_id": "", "query": "shoes"},
        {"user_id": "u1", "query": "shoes", "extra": 1},
        [1, 2],
    ):
        response = await api.client.post("/v1/search", json=bad, headers=AUTH)
        assert response.status == 400, bad
        assert (await response.json())["error"] == "bad_request"
    not_json = await api.client.post("/v1/search", data=b"{not json", headers=AUTH)
    assert not_json.status == 400


async def test_unknown_routes_and_methods_answer_json_errors(serve: Serve) -> None:
    api = await serve(lone())
    missing = await api.client.get("/v1/nothing", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["error"] == "not_found"
    wrong = await api.client.get("/v1/search", headers=AUTH)
    assert wrong.status == 405 and (await wrong.json())["error"] == "method_not_allowed"


async def test_a_non_owner_forwards_to_the_owner_and_relays_its_answer(serve: Serve) -> None:
    owner = await serve(DictBackend(lists={"u1": recommendation("u1")}))
    owner.backend.own_url = owner.url
    entry = await serve(DictBackend(own_url="http://entry:1"))
    routes = {0: owner.url, 1: owner.url}  # the owner owns every partition
    owner.backend.owners = entry.backend.owners = routes

    found = await entry.client.get("/v1/users/u1/recommendations", headers=AUTH)
    assert found.status == 200 and await found.json() == recommendation("u1")
    missing = await entry.client.get("/v1/users/u2/recommendations", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["error"] == "no_list"
    searched = await entry.client.post(
        "/v1/search", json={"user_id": "u1", "query": "kettle", "k": 2}, headers=AUTH
    )
    assert searched.status == 200 and owner.backend.searches == [("u1", "kettle", 2)]
    unauthorised = await entry.client.get("/v1/users/u1/recommendations")
    assert unauthorised.status == 401


async def test_a_forwarded_request_is_never_forwarded_again(serve: Serve) -> None:
    api = await serve(DictBackend(owners={0: "http://elsewhere:1"}))
    headers = {**AUTH, "X-Intentstream-Forwarded": "1"}
    response = await api.client.get("/v1/users/u1/recommendations", headers=headers)
    assert response.status == 503 and response.headers["Retry-After"] == "1"


async def test_an_owner_that_cannot_be_reached_is_503(serve: Serve, free_port: Any) -> None:
    api = await serve(DictBackend(owners={0: f"http://127.0.0.1:{free_port()}"}))
    response = await api.client.get("/v1/users/u1/recommendations", headers=AUTH)
    assert response.status == 503 and (await response.json())["error"] == "unavailable"

"""Sponsored items through the whole pipeline: answers, charges, caps, erasure, ads off."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import orjson
import pytest

from model.serving.scorers import CheckpointScorer, ItemScorer
from streams.pipeline.ads.campaigns import Campaign
from streams.pipeline.ads.spend import ReportPart, SpendDelta
from streams.pipeline.batch import BatchResult, EventPipeline
from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.pipeline.validation import load_schema
from streams.settings import Settings

KEY = b"p" * 32
MASTER = bytes(range(32))
DAY = 19_675 * 86_400.0  # 2023-11-14, 00:00 UTC
TODAY = "2023-11-14"
SETTINGS = Settings(pseudonym_key="p" * 32, top_k=4, ads_depth=10, ads_slots=1, text_search=False)
RECOMMENDATION = fastjsonschema.compile(load_schema("schemas/recommendation.schema.json"))


@dataclass
class Shop:
    """A pipeline with its two tables, and the records it was given so far."""

    pipeline: EventPipeline
    states: dict[bytes, bytes] = field(default_factory=dict)
    keys: dict[bytes, bytes] = field(default_factory=dict)
    offset: int = 0

    def run(self, *records: InputRecord) -> BatchResult:
        result = self.pipeline.process(
            list(records), read_state=self.states.get, read_key=self.keys.get
        )
        result.changes.apply(self.states, self.keys)
        return result

    def event(self, user: str, ts: float, **fields: Any) -> InputRecord:
        """An event of ``user`` at event time ``ts``, stamped by the broker a second later."""
        self.offset += 1
        value = {"event_id": f"e{self.offset}", "user_id": user, "ts": ts, "type": "view"}
        return InputRecord(
            user.encode(),
            orjson.dumps({**value, **fields}),
            SETTINGS.events_topic,
            0,
            self.offset,
            ts + 1.0,
        )

    def erase(self, user: str, ts: float) -> InputRecord:
        """An erase request of ``user``, stamped by the broker at ``ts``."""
        self.offset += 1
        request = orjson.dumps({"action": "erase", "request_id": f"r{self.offset}"})
        return InputRecord(
            user.encode(), request, SETTINGS.privacy_requests_topic, 0, self.offset, ts
        )


def _shop(scorer: ItemScorer | None, settings: Settings = SETTINGS) -> Shop:
    pipeline = build_pipeline(
        settings,
        pseudonymizer=Pseudonymizer(KEY),
        master_key=MASTER,
        clock=lambda: DAY + 10_000.0,
        scorer=scorer,
        worker_id="w1",
    )
    return Shop(pipeline)


def _answers(result: BatchResult) -> list[list[dict[str, Any]]]:
    return [orjson.loads(r.value or b"")["items"] for r in result.recommendations]


def _spend(result: BatchResult) -> list[SpendDelta]:
    deltas = []
    for record in result.ad_spend:
        worker, delta = SpendDelta.from_json(record.value)
        assert worker == "w1" and record.key == delta.campaign_id.encode()
        assert record.topic == SETTINGS.ads_spend_topic
        deltas.append(delta)
    return deltas


@pytest.fixture
def shop(calibrated_scorer: CheckpointScorer, make_campaign: Callable[..., Campaign]) -> Shop:
    """A pipeline serving a calibrated tiny model, with c1 sponsoring every item at 0.5."""
    shop = _shop(calibrated_scorer)
    shop.pipeline.campaigns.upsert(make_campaign("c1", items=tuple("abcde")))
    return shop


def test_an_answer_shows_the_sponsored_item_third_and_its_impression_goes_out(shop: Shop) -> None:
    result = shop.run(shop.event("u1", DAY + 60, item_id="a"))
    [items] = _answers(result)
    RECOMMENDATION(orjson.loads(result.recommendations[0].value or b""))
    assert len(items) == SETTINGS.top_k and len({i["item_id"] for i in items}) == len(items)
    sponsored = [n for n, item in enumerate(items) if item.get("sponsored")]
    assert sponsored == [2] and items[2]["campaign_id"] == "c1"
    [delta] = _spend(result)
    assert (delta.campaign_id, delta.day, delta.impressions, delta.spend) == ("c1", TODAY, 1, 0.0)
    assert delta.report == ReportPart(users=1, impressions=1)
    stats = result.stats
    assert stats.ads_auctions == {"filled": 1} and stats.ads_slots_offered == 1
    assert stats.ads_impressions == 1
    # The model's own list is what the quality check compares the next event with.
    assert "sponsored" not in orjson.loads(result.recommendations[0].value or b"")


def test_a_view_of_the_sponsored_item_is_charged_to_its_campaign(shop: Shop) -> None:
    shown = shop.run(shop.event("u1", DAY + 60, item_id="a"))
    ad = _answers(shown)[0][2]["item_id"]
    clicked = shop.run(shop.event("u1", DAY + 120, item_id=ad))
    charges = [d for d in _spend(clicked) if d.clicks]
    assert [(d.campaign_id, d.clicks) for d in charges] == [("c1", 1)]
    # Alone in its auction, c1 pays the reserve.
    assert charges[0].spend == SETTINGS.ads_reserve_price
    assert clicked.stats.ads_clicks == 1 and clicked.stats.ads_spend == SETTINGS.ads_reserve_price
    assert shop.pipeline.spend.spent("c1", TODAY) == SETTINGS.ads_reserve_price
    # The answer to the view does not advertise the item viewed: a reload costs nothing.
    assert all(item["item_id"] != ad for item in _answers(clicked)[0] if item.get("sponsored"))
    again = shop.run(shop.event("u1", DAY + 130, item_id=ad))
    assert sum(d.clicks for d in _spend(again)) == 0


def test_the_frequency_cap_holds_within_a_batch_and_across_batches(
    calibrated_scorer: CheckpointScorer, make_campaign: Callable[..., Campaign]
) -> None:
    shop = _shop(calibrated_scorer, SETTINGS.model_copy(update={"ads_frequency_cap": 2}))
    shop.pipeline.campaigns.upsert(make_campaign("c1", items=tuple("abcde")))
    first = shop.run(*(shop.event("u1", DAY + n, item_id="a") for n in range(3)))
    assert first.stats.ads_auctions == {"filled": 2, "capped": 1}
    later = shop.run(shop.event("u1", DAY + 10, item_id="b"))
    assert later.stats.ads_auctions == {"capped": 1}
    tomorrow = shop.run(shop.event("u1", DAY + 86_400, item_id="b"))
    assert tomorrow.stats.ads_auctions == {"filled": 1}


def test_a_campaign_paced_out_by_every_workers_spend_is_not_shown(shop: Shop) -> None:
    shop.pipeline.spend.add(SpendDelta("c1", TODAY, clicks=90, spend=40.0))  # another worker's
    early = shop.run(shop.event("u1", DAY + 0.2 * 86_400, item_id="a"))  # 40 > 30 % of 100
    assert early.stats.ads_auctions == {"paced": 1} and early.ad_spend == []
    later = shop.run(shop.event("u2", DAY + 0.35 * 86_400, item_id="a"))
    assert later.stats.ads_auctions == {"filled": 1}


def test_a_shopper_erased_during_the_day_is_reported_once_that_day(shop: Shop) -> None:
    """The report's bound per shopper and day holds across an erasure the same day."""
    deltas = _spend(shop.run(shop.event("u1", DAY + 60, item_id="a")))
    erased = shop.run(shop.erase("u1", DAY + 100))
    assert len(erased.audit) == 1
    for n in range(2):  # the shopper comes back the same day: a new state, new impressions
        deltas += _spend(shop.run(shop.event("u1", DAY + 200 + n, item_id="b")))
    assert sum(d.impressions for d in deltas) == 3  # every impression is counted ...
    report = ReportPart()
    for delta in deltas:
        report.add(delta.report)
    assert report.users == 1 and report.impressions == 1  # ... but reported once


def test_no_raw_user_id_leaves_in_spend_records(shop: Shop) -> None:
    shown = shop.run(shop.event("shopper-0042", DAY + 60, item_id="a"))
    ad = _answers(shown)[0][2]["item_id"]
    clicked = shop.run(shop.event("shopper-0042", DAY + 90, item_id=ad))
    records = [*shown.ad_spend, *clicked.ad_spend]
    assert records and all(b"0042" not in (r.value or b"") + r.key for r in records)


def test_answers_of_an_uncalibrated_scorer_get_no_sponsored_item(
    make_campaign: Callable[..., Campaign],
) -> None:
    shop = _shop(None)  # the stream baseline has no calibrator
    shop.pipeline.campaigns.upsert(make_campaign("c1", items=tuple("abcde")))
    result = shop.run(shop.event("u1", DAY, item_id="a"), shop.event("u2", DAY, item_id="b"))
    assert result.stats.ads_auctions == {"uncalibrated": 2} and result.ad_spend == []
    assert not any(item.get("sponsored") for items in _answers(result) for item in items)


def test_ads_off_or_unmatched_leave_every_answer_as_it_was(
    calibrated_scorer: CheckpointScorer, make_campaign: Callable[..., Campaign]
) -> None:
    """No slot, no campaign, or no campaign that matches: the same bytes (the deeper
    ranking of the last changes nothing in the list)."""
    off = _shop(calibrated_scorer, SETTINGS.model_copy(update={"ads_slots": 0}))
    off.pipeline.campaigns.upsert(make_campaign("c1", items=tuple("abcde")))
    empty = _shop(calibrated_scorer)
    unmatched = _shop(calibrated_scorer)
    unmatched.pipeline.campaigns.upsert(
        make_campaign("c1", items=tuple("abcde"), categories=frozenset({"hats"}))
    )
    outputs = []
    for shop in (off, empty, unmatched):
        views = zip("uvwu", "abxc", strict=True)
        events = [shop.event(user, DAY + n, item_id=item) for n, (user, item) in enumerate(views)]
        result = shop.run(*events)
        assert result.ad_spend == []
        outputs.append(([r.value for r in result.recommendations], result.stats.ads_auctions))
    assert outputs[0][0] == outputs[1][0] == outputs[2][0]
    assert [auctions for _, auctions in outputs] == [
        {"disabled": 4},
        {"no_candidate": 4},
        {"no_candidate": 3, "uncalibrated": 1},  # x is new to the model: the baseline answers
    ]


def test_the_read_only_search_shows_no_sponsored_item_and_charges_nothing(shop: Shop) -> None:
    shop.run(shop.event("u1", DAY + 60, item_id="a"))
    pseudonym = Pseudonymizer(KEY).one("u1").encode()
    answer, _ = shop.pipeline.search(
        pseudonym, "anything", read_state=shop.states.get, read_key=shop.keys.get
    )
    assert answer.deep is None and len(answer.items) <= SETTINGS.top_k
    assert shop.pipeline.spend.report_totals(TODAY)["c1"] == ReportPart(users=1, impressions=1)

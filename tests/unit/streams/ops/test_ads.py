"""``intentstream ads``: a campaigns file checked line by line before anything is sent, the
day's spend against budgets, the released reports, and the arguments."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console
from rich.table import Table

from streams.ops.ads import add_ads_parser, cmd_ads, read_campaigns, reports_table, spend_table
from streams.ops.failures import CommandError
from streams.ops.parser import build_parser
from streams.pipeline.ads.campaigns import Campaign, CampaignBook
from streams.pipeline.ads.spend import SpendDelta
from streams.settings import Settings

DAY = "2026-03-01"


def _line(cid: str, **fields: Any) -> str:
    campaign = {
        "campaign_id": cid,
        "advertiser": "acme",
        "items": ["i1"],
        "bid": {"per": "click", "amount": 0.4},
        "daily_budget": 10.0,
        "start": 0,
        "end": None,
        **fields,
    }
    return orjson.dumps(campaign).decode()


def _text(table: Table, *, styles: bool = False) -> str:
    console = Console(file=io.StringIO(), record=True, width=200, color_system="standard")
    console.print(table)
    return console.export_text(styles=styles)


def test_a_good_file_becomes_campaigns_keyed_by_their_id(tmp_path: Path) -> None:
    path = tmp_path / "campaigns.jsonl"
    path.write_text(f"{_line('c1')}\n\n{_line('c2', status='paused')}\n")
    campaigns = read_campaigns(path)
    assert [cid for cid, _ in campaigns] == ["c1", "c2"]
    assert orjson.loads(campaigns[1][1])["status"] == "paused"


def test_every_bad_line_is_reported_with_its_number_and_nothing_is_returned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "campaigns.jsonl"
    lines = [
        _line("c1"),
        "{not json",
        _line("c3", start=100, end=50),
        _line("c4", bid={"per": "view", "amount": 1}),
        '["c5"]',
        _line("c6"),
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CommandError, match="4 bad campaign line"):
        read_campaigns(path)
    reported = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1] for line in reported] == ["2", "3", "4", "5"]
    assert reported[0].startswith(f"{path}:2: invalid_json")
    assert "end must be after start" in reported[1]


def test_the_spend_table_sums_every_workers_spend_of_the_day_against_the_budget() -> None:
    campaigns = CampaignBook(max_campaigns=5)
    for cid in ("c1", "c2"):
        campaigns.upsert(Campaign(cid, "acme", ("i1",), "click", 0.4, 10.0, 0.0, None))
    spend = [
        SpendDelta("c1", DAY, clicks=10, spend=4.0),
        SpendDelta("c1", DAY, clicks=20, spend=7.0),  # another worker's
        SpendDelta("c2", DAY, clicks=1, spend=0.5),
        SpendDelta("c2", "2026-02-28", clicks=9, spend=9.0),
    ]
    table = spend_table(campaigns, spend, day=DAY, settings=Settings())
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in _text(table).splitlines()
        if line.startswith("│ c")
    ]
    assert rows == [["c1", "acme", "11.00", "10.00", "110%"], ["c2", "acme", "0.50", "10.00", "5%"]]
    c1, c2 = [line for line in _text(table, styles=True).splitlines() if " c" in line]
    assert "\x1b[31m110%" in c1 and "\x1b[31m" not in c2  # past budget plus tolerance: red


def test_a_suppressed_report_shows_no_counts() -> None:
    reports = [
        {"campaign_id": "c1", "advertiser": "acme", "day": DAY, "suppressed": True, "epsilon": 1.0},
        {
            "campaign_id": "c2",
            "advertiser": "acme",
            "day": DAY,
            "suppressed": False,
            "users": 31,
            "impressions": 70,
            "clicks": 4,
            "purchases": 0,
            "spend": 1.6,
            "epsilon": 1.0,
        },
    ]
    text = _text(reports_table(reports))
    assert "suppressed" in text and "31" in text and "1.6" in text


def test_the_arguments_check_the_day(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser([add_ads_parser], {"ads": cmd_ads}, description="test")
    args = parser.parse_args(["ads", "reports", "--day", DAY])
    assert (args.action, args.day, args.func) == ("reports", DAY, cmd_ads)
    assert parser.parse_args(["ads", "spend"]).day is None
    assert parser.parse_args(["ads", "campaigns", "c.jsonl"]).file == Path("c.jsonl")
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["ads", "spend", "--day", "yesterday"])
    assert exited.value.code == 2
    assert "not a day YYYY-MM-DD: 'yesterday'" in capsys.readouterr().err

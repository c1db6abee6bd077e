"""``intentstream ads campaigns|spend|reports``: load campaigns, see today's spend, read reports.

``intentstream ads campaigns FILE`` produces a JSON-lines file of campaigns
(docs/ads.md) to the campaigns topic, keyed by campaign id; every line is checked as
the workers check it first, and a file with any bad line sends nothing: each bad
line is reported with its number, exit status 2. ``intentstream ads spend [--day D]``
shows each campaign's spend of the day (UTC, default today) from every worker's spend
records against its daily budget. ``intentstream ads reports [--day D]`` prints the DP
reports released to advertisers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from streams.kafka.admin import ensure_topics
from streams.kafka.campaign_feed import update_book
from streams.kafka.feed import read_to_end
from streams.kafka.produce import produce_records
from streams.kafka.security import client_security
from streams.ops.failures import CommandError
from streams.ops.parser import Parents, Subcommands
from streams.pipeline.ads.campaigns import CampaignBook, parse_campaign
from streams.pipeline.ads.spend import SpendBook, SpendDelta, day_name, day_number
from streams.pipeline.validation import Rejection
from streams.settings import Settings

#: Report columns, in the order shown.
REPORT_COUNTS = ("users", "impressions", "clicks", "purchases", "spend")


def add_ads_parser(sub: Subcommands, parents: Parents) -> None:
    """``ads campaigns FILE``, ``ads spend [--day D]``, ``ads reports [--day D]``."""
    ads = sub.add_parser("ads", help="sponsored items: load campaigns, see spend and reports")
    actions = ads.add_subparsers(dest="action", required=True, metavar="ACTION")
    campaigns = actions.add_parser(
        "campaigns",
        parents=parents.broker(),
        help="produce a JSON-lines file of campaigns to the campaigns topic, each checked "
        "first (any bad line: nothing is sent)",
    )
    campaigns.add_argument("file", type=Path, help="one campaign object per line (docs/ads.md)")
    spend = actions.add_parser(
        "spend",
        parents=parents.broker(),
        help="each campaign's spend of the day (every worker's) against its daily budget",
    )
    reports = actions.add_parser(
        "reports", parents=parents.broker(), help="the DP reports released to advertisers"
    )
    spend.add_argument("--day", type=_day, help="YYYY-MM-DD, UTC (default: today)")
    reports.add_argument("--day", type=_day, help="YYYY-MM-DD, UTC (default: every day)")


def cmd_ads(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``intentstream ads ACTION``."""
    if args.action == "campaigns":
        return _load_campaigns(args.file, settings)
    console = Console()
    if args.action == "spend":
        day = args.day or day_name(day_number(time.time()))
        console.print(
            spend_table(_campaigns(settings), _spend(settings), day=day, settings=settings)
        )
        return 0
    reports = [
        report for report in _reports(settings) if args.day is None or report.get("day") == args.day
    ]
    console.print(reports_table(reports))
    return 0


def read_campaigns(path: Path) -> list[tuple[str, bytes]]:
    """``(campaign id, record value)`` of each line of ``path``, checked as a worker checks it.

    Raises:
        CommandError: a line is not a campaign; every bad line is written to stderr first
            as ``PATH:LINE: detail``.
    """
    campaigns, bad = [], []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            value = line.strip()
            if not value:
                continue
            outcome = parse_campaign(_campaign_id(value), value)
            if isinstance(outcome, Rejection):
                bad.append(f"{path}:{number}: {outcome.reason.value}: {outcome.detail}")
            else:
                campaigns.append((outcome.campaign_id, value))
    if bad:
        sys.stderr.write("".join(f"{problem}\n" for problem in bad))
        raise CommandError(f"{len(bad)} bad campaign line(s) in {path}; nothing was sent")
    return campaigns


def _campaign_id(value: bytes) -> bytes | None:
    """The key a line's campaign is produced with: its own ``campaign_id``, when it has one."""
    try:
        named = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None  # parse_campaign says why
    campaign_id = named.get("campaign_id") if isinstance(named, dict) else None
    return campaign_id.encode() if isinstance(campaign_id, str) else None


def _load_campaigns(path: Path, settings: Settings) -> int:
    published = publish_campaigns(settings, read_campaigns(path))
    Console().print(
        f"published {published:,} campaigns from {path} to {settings.ads_campaigns_topic}"
    )
    return 0


def publish_campaigns(settings: Settings, campaigns: list[tuple[str, bytes]]) -> int:
    """Produce checked campaigns, keyed by their ids, and wait for the broker; how many."""
    ensure_topics(settings)
    records = [(campaign_id.encode(), value) for campaign_id, value in campaigns]
    asyncio.run(
        produce_records(
            settings.bootstrap,
            settings.ads_campaigns_topic,
            records,
            acks="all",
            **client_security(settings),
        )
    )
    return len(records)


def spend_table(
    campaigns: CampaignBook, spend: Iterable[SpendDelta], *, day: str, settings: Settings
) -> Table:
    """Each campaign's spend of ``day`` against its daily budget, as a worker's book sums it.

    A share above the budget plus ``ads_overspend_tolerance`` is red (the overspend alert's
    line).
    """
    book = SpendBook(
        "intentstream-cli", campaigns=campaigns, pacing_slack=settings.ads_pacing_slack
    )
    for delta in spend:
        book.add(delta)
    table = Table(title=f"spend on {day} (UTC) in {settings.ads_spend_topic}")
    for column in ("campaign", "advertiser", "spend", "daily budget", "share"):
        table.add_column(
            column, justify="left" if column in ("campaign", "advertiser") else "right"
        )
    limit = 1.0 + settings.ads_overspend_tolerance
    for campaign in sorted(campaigns, key=lambda c: c.campaign_id):
        spent = book.spent(campaign.campaign_id, day)
        share = spent / campaign.daily_budget
        shown = f"[red]{share:.0%}[/red]" if share > limit else f"{share:.0%}"
        table.add_row(
            campaign.campaign_id,
            campaign.advertiser,
            f"{spent:,.2f}",
            f"{campaign.daily_budget:,.2f}",
            shown,
        )
    return table


def reports_table(reports: Iterable[dict[str, object]]) -> Table:
    """The reports, by day then campaign; a suppressed one shows no counts."""
    table = Table(title="released reports")
    for column in ("day", "campaign", "advertiser", *REPORT_COUNTS, "epsilon"):
        table.add_column(column)
    for report in sorted(reports, key=lambda r: (str(r.get("day")), str(r.get("campaign_id")))):
        counts = ["suppressed", *[""] * (len(REPORT_COUNTS) - 1)]
        if not report.get("suppressed"):
            counts = [f"{report.get(name, '')}" for name in REPORT_COUNTS]
        table.add_row(
            str(report.get("day")),
            str(report.get("campaign_id")),
            str(report.get("advertiser", "")),
            *counts,
            f"{report.get('epsilon', '')}",
        )
    return table


def _campaigns(settings: Settings) -> CampaignBook:
    """The campaigns topic read to its end into a book, as a worker holds it.

    Bad records are left out: the workers send them to the DLQ.
    """
    book = CampaignBook(max_campaigns=settings.ads_max_campaigns)
    update_book(
        book, read_to_end(settings, settings.ads_campaigns_topic), settings=settings, seal=_unsealed
    )
    return book


def _unsealed(key: bytes | None, value: bytes | None) -> bytes:
    """Dead letters the command only drops need no sealing."""
    return b""


def _spend(settings: Settings) -> list[SpendDelta]:
    """Every delta of the spend topic; records that do not parse are left out."""
    deltas = []
    for record in read_to_end(settings, settings.ads_spend_topic):
        try:
            deltas.append(SpendDelta.from_json(record.value)[1])
        except ValueError:
            continue  # the workers send it to the DLQ
    return deltas


def _reports(settings: Settings) -> list[dict[str, object]]:
    """The latest report of each (campaign, day) on the reports topic."""
    latest: dict[bytes, dict[str, object]] = {}
    for record in read_to_end(settings, settings.ads_reports_topic):
        if record.key is None:
            continue
        if record.value is None:
            latest.pop(record.key, None)
            continue
        latest[record.key] = orjson.loads(record.value)
    return list(latest.values())


def _day(text: str) -> str:
    """A ``--day`` argument, checked.

    Examples:
        >>> _day("2026-01-31")
        '2026-01-31'
    """
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day YYYY-MM-DD: {text!r}") from None
    return text

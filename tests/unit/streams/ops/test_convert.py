"""``intentstream data convert``: tiny hand-written originals of each format, converted exactly."""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import pytest

from streams.ops.cli import build_parser, build_settings
from streams.ops.convert import Row, convert, sort_by_time
from streams.ops.event_log import CSV_COLUMNS, read_events

HEADER = ",".join(CSV_COLUMNS)

RETAILROCKET = """timestamp,visitorid,event,itemid,transactionid
1433221332117,257597,view,355908,
1433224214164,992329,view,248676,
1433221999827,257597,addtocart,355908,
1433223236124,111016,transaction,5,4000
1433230000000,257597,view,1,
1433224214164,992329,view,248677,
1433000000000,7,view,10,
1433001800000,7,view,11,
1433003600001,7,view,12,
"""
RETAILROCKET_CONVERTED = [
    "1433000000,7,7-1,view,10,,,",
    "1433001800,7,7-1,view,11,,,",  # exactly 30 minutes later: the same session
    "1433003600.001,7,7-2,view,12,,,",  # 30 minutes and 1 ms: a new one
    "1433221332.117,257597,257597-1,view,355908,,,",
    "1433221999.827,257597,257597-1,add_to_cart,355908,,,",
    "1433223236.124,111016,111016-1,purchase,5,,,",
    "1433224214.164,992329,992329-1,view,248676,,,",
    "1433224214.164,992329,992329-1,view,248677,,,",  # same time: file order
    "1433230000,257597,257597-2,view,1,,,",
]

CLICKS = """1,2014-04-07T10:51:09.277Z,214536502,0
1,2014-04-07T10:54:09.868Z,214536500,0
2,2014-04-07T10:50:00.000Z,214662742,S
3,2014-04-06T08:00:00Z,214530000,7
"""
BUYS = """1,2014-04-07T10:55:00.000Z,214536500,12462,1
2,2014-04-07T10:52:00.123Z,214662742,0,0
"""
YOOCHOOSE_CONVERTED = [
    "1396771200,3,3,view,214530000,7,,",
    "1396867800,2,2,view,214662742,S,,",
    "1396867869.277,1,1,view,214536502,,,",  # category 0 = unknown
    "1396867920.123,2,2,purchase,214662742,,,",  # price 0 = unknown
    "1396868049.868,1,1,view,214536500,,,",
    "1396868100,1,1,purchase,214536500,,12462,",
]

DIGINETICA = """sessionId;userId;itemId;timeframe;eventdate
1;NA;81766;526309;2016-05-09
1;NA;31331;1031018;2016-05-09
2;;32118;243569;2016-05-09
3;5943;11;12;2016-05-08
"""
DIGINETICA_CONVERTED = [
    "1462665600.012,5943,3,view,11,,,",
    "1462752243.569,s2,2,view,32118,,,",  # anonymous: the session is the user
    "1462752526.309,s1,1,view,81766,,,",
    "1462753031.018,s1,1,view,31331,,,",
]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _originals(tmp_path: Path) -> dict[str, tuple[Path, list[str]]]:
    """Each format's original in ``tmp_path`` and the rows its conversion must hold."""
    yoochoose = tmp_path / "yoochoose"
    _write(yoochoose / "yoochoose-clicks.dat", CLICKS)
    _write(yoochoose / "yoochoose-buys.dat", BUYS)
    return {
        "retailrocket": (_write(tmp_path / "events.csv", RETAILROCKET), RETAILROCKET_CONVERTED),
        "yoochoose": (yoochoose, YOOCHOOSE_CONVERTED),
        "diginetica": (_write(tmp_path / "views.csv", DIGINETICA), DIGINETICA_CONVERTED),
    }


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as text:
        return text.read().split("\n")


@pytest.mark.parametrize("name", ["retailrocket", "yoochoose", "diginetica"])
@pytest.mark.parametrize("chunk_rows", [3, 1_000])  # sorted runs on disk merged, or in memory
def test_each_original_converts_to_the_canonical_csv(
    tmp_path: Path, name: str, chunk_rows: int
) -> None:
    source, expected = _originals(tmp_path)[name]
    out = tmp_path / "out" / f"{name}.csv.gz"
    converted = convert(name, source, out, chunk_rows=chunk_rows)
    assert _lines(out) == [HEADER, *expected, ""]
    assert converted.events == len(expected)
    assert sorted(tmp_path.joinpath("out").iterdir()) == [out]  # no runs or partial file left

    events = list(read_events(out))
    assert [e["ts"] for e in events] == [float(line.split(",")[0]) for line in expected]
    assert [e["user_id"] for e in events] == [line.split(",")[1] for line in expected]
    assert all(e["type"] in {"view", "add_to_cart", "purchase"} and e["item_id"] for e in events)


def test_yoochoose_without_buys_converts_the_clicks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path / "yoochoose" / "yoochoose-clicks.dat", CLICKS)
    with caplog.at_level(logging.WARNING, logger="streams.ops.convert"):
        converted = convert("yoochoose", tmp_path / "yoochoose", tmp_path / "out.csv.gz")
    assert converted.types == {"view": 4}
    assert "converting clicks only" in caplog.text


@pytest.mark.parametrize(
    ("name", "original", "line", "error"),
    [
        ("retailrocket", RETAILROCKET.replace(",addtocart,", ",wishlist,"), 4, "unknown event"),
        ("retailrocket", RETAILROCKET.replace("1433224214164,", "yesterday,", 1), 3, "timestamp"),
        ("retailrocket", RETAILROCKET.replace(",4000\n", ",4000,9\n"), 5, "expected 5 fields"),
        ("retailrocket", RETAILROCKET.replace(",992329,", ",,", 1), 3, "visitorid is empty"),
        ("retailrocket", "ts,visitor,event,item,transaction\n", 1, "expected the header"),
        ("diginetica", DIGINETICA.replace("2016-05-08", "08/05/2016"), 5, "eventdate"),
        ("diginetica", DIGINETICA.replace(";81766;", ";;"), 2, "itemId is empty"),
        ("retailrocket", RETAILROCKET + "1," + "x" * 200_000 + "\n", 11, "field larger"),
    ],
)
def test_a_malformed_row_stops_it_naming_file_and_line(
    tmp_path: Path, name: str, original: str, line: int, error: str
) -> None:
    source = _write(tmp_path / "original.csv", original)
    out = tmp_path / "out" / "events.csv.gz"
    with pytest.raises(ValueError, match=re.escape(f"{source}:{line}: ") + ".*" + error):
        convert(name, source, out, chunk_rows=2)
    assert list(out.parent.iterdir()) == []  # nothing half-written is left


@pytest.mark.parametrize(
    ("clicks", "error"),
    [
        ("1,2014-04-07 10:51,214536502,0\n1,07/04/2014,214536500,0\n", "not ISO 8601"),
        ("1,2014-04-07T10:51:09Z,214536502\n", "expected 4 fields"),
    ],
)
def test_a_malformed_yoochoose_row_names_its_file(tmp_path: Path, clicks: str, error: str) -> None:
    path = _write(tmp_path / "yoochoose-clicks.dat", clicks)
    with pytest.raises(ValueError, match=re.escape(f"{path}:") + r"\d: .*" + error):
        convert("yoochoose", tmp_path, tmp_path / "out.csv.gz")


def test_a_missing_original_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no yoochoose-clicks\.dat in"):
        convert("yoochoose", tmp_path, tmp_path / "out.csv.gz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        convert("diginetica", tmp_path / "train-item-views.csv", tmp_path / "out.csv.gz")
    with pytest.raises(ValueError, match="unknown data set 'movielens'"):
        convert("movielens", tmp_path, tmp_path / "out.csv.gz")


def test_sorting_in_runs_is_stable_and_complete(tmp_path: Path) -> None:
    times = [5, 1, 5, 3, 1, 9, 5, 0, 3, 2, 5]
    rows = [Row(t, f"u{n}", "", "view", f"i{n}") for n, t in enumerate(times)]
    expected = sorted(rows, key=lambda row: row.us)  # sorted() is stable
    for chunk_rows in (1, 2, 4, len(rows), 100):
        assert list(sort_by_time(rows, workdir=tmp_path, chunk_rows=chunk_rows)) == expected


def test_the_data_command_converts_and_fails_with_exit_code_2(tmp_path: Path) -> None:
    source = _write(tmp_path / "train-item-views.csv", DIGINETICA)
    out = tmp_path / "diginetica" / "train.csv.gz"
    args = build_parser().parse_args(["data", "convert", "diginetica", str(source), str(out)])
    assert args.func(args, build_settings(args)) == 0
    assert _lines(out)[1:-1] == DIGINETICA_CONVERTED

    _write(source, DIGINETICA.replace(";11;", ";;"))
    assert args.func(args, build_settings(args)) == 2

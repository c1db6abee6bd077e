"""`intentstream train` ends a run the data cannot give in one line naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.ops.cli import main
from tests.unit.streams.ops.test_cli import one_error_line


def test_a_dp_vocabulary_that_keeps_no_item_is_one_line_naming_its_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At a tiny vocabulary epsilon no item passes the threshold: the user's to fix, not a bug."""
    rows = ["ts,user_id,session_id,type,item_id,category,price,query"]
    rows += [f"{n},s{n},s{n},click,i{n % 7},,," for n in range(60)]
    data = tmp_path / "events.csv"
    data.write_text("\n".join(rows) + "\n")
    argv = ["train", str(data), "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert main([*argv, "--dp-epsilon", "1", "--dp-vocab-epsilon", "0.01"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "DP vocabulary release kept no item at epsilon 0.01" in line
    assert "--dp-vocab-epsilon" in line

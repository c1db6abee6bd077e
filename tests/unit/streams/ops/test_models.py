"""``intentstream model list``: each version's whole epsilon, and one not DP-trained flagged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from online_learning.registry import ModelStore
from streams.ops.models import versions_table

OFFLINE = {"epsilon": 1.0, "delta": 1e-6, "accountant": "rdp"}
#: What the learner records for a version learned from the offline one: the whole spend on
#: top, its parts beside it (``streams.learner.spend``).
LEARNED = {
    "epsilon": 1.5,
    "delta": 2e-6,
    "base": {"epsilon": 1.0, "delta": 1e-6},
    "learner": {"epsilon": 0.5, "delta": 1e-6},
}


def test_the_list_shows_each_versions_whole_epsilon_and_flags_one_not_dp_trained(
    tmp_path: Path, tiny_checkpoint: Callable[..., Path]
) -> None:
    store = ModelStore(tmp_path / "store")
    runs = [tiny_checkpoint(tmp_path / f"run{seed}", seed=seed) for seed in range(3)]
    offline = store.publish(runs[0], parent=None, metrics={}, privacy=OFFLINE).version
    online = store.publish(runs[1], parent=offline, metrics={}, privacy=LEARNED).version
    plain = store.publish(runs[2], parent=None, metrics={}, privacy=None).version
    table = versions_table(store)
    columns = {column.header: list(column.cells) for column in table.columns}
    shown = dict(zip(columns["version"], columns["epsilon"], strict=True))
    assert shown == {offline: "1", online: "1.5", plain: "[red]not DP[/red]"}

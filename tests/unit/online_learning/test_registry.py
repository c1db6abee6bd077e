"""Model store: publish, verify, reject, roll back; announcements; ``intentstream model``."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

import streams.ops.commands.models
from model.calibration import CALIBRATION_FILE, ClickCalibrator
from model.checkpoint import Checkpoint, load_checkpoint, save_calibrator, save_ranker
from model.ranking.knn import item_matrix
from model.ranking.parts import RANKER_FILE, FusionWeights, RankerParts
from model.scorer import SequenceScorer
from model.serving.scorers import CheckpointScorer
from online_learning.announcement import Announcement, PrivacySpend
from online_learning.errors import BadAnnouncement, ModelRejected, RegistryError, UnknownVersion
from online_learning.manifest import MANIFEST, manifest
from online_learning.probation import guard
from online_learning.registry import CURRENT, ModelStore
from streams.errors import BrokerError
from streams.ops.cli import build_parser, build_settings

PRIVACY = {"epsilon": 0.9, "delta": 1e-5, "max_grad_norm": 1.0, "unit": "session"}
METRICS = {"P@20": 51.0, "MRR@20": 18.0, "HR@10": 40.0, "NDCG@10": 21.0}

TrainRun = Callable[..., Path]


@pytest.fixture
def train_run(tiny_checkpoint: Callable[..., Path]) -> TrainRun:
    """Factory of run folders as ``intentstream train`` leaves them: epoch-0001 and LATEST,
    with ``METRICS`` and the given privacy spend in their meta."""

    def make(run: Path, *, seed: int = 0, privacy: dict[str, object] | None = None) -> Path:
        return tiny_checkpoint(run, seed=seed, meta={"metrics": METRICS, "privacy": privacy})

    return make


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """An empty store whose clock ticks a minute per call, so versions never collide."""
    ticks = itertools.count(1_764_298_800, 60)
    return ModelStore(tmp_path / "models", clock=lambda: float(next(ticks)))


@pytest.fixture
def publish(store: ModelStore, tmp_path: Path, train_run: TrainRun) -> Callable[..., str]:
    """Publishes a freshly trained run (seeded) and returns its version id."""
    seeds = itertools.count()

    def publish_one(parent: str | None = None, **metrics: float) -> str:
        seed = next(seeds)
        run = train_run(tmp_path / f"run-{seed}", seed=seed, privacy=PRIVACY)
        announced = store.publish(run, parent=parent, metrics=metrics or METRICS, privacy=PRIVACY)
        return announced.version

    return publish_one


def _same_weights(left: SequenceScorer, right: SequenceScorer) -> bool:
    a, b = left.state_dict(), right.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_publish_list_and_load_round_trip(
    store: ModelStore, tmp_path: Path, train_run: TrainRun
) -> None:
    run = train_run(tmp_path / "run", privacy=PRIVACY)
    announced = store.publish(run, parent=None, metrics=METRICS, privacy=PRIVACY)

    [info] = store.versions()
    assert info.version == announced.version and info.status == "accepted"
    assert info.parent is None and info.metrics == METRICS
    assert info.privacy == PrivacySpend(epsilon=0.9, delta=1e-5)
    assert announced.uri == str(store.root / announced.version)
    assert store.current() is None  # publishing does not switch what is served

    loaded = store.load(announced.version)
    original = load_checkpoint(run)
    assert _same_weights(loaded.model, original.model)
    assert loaded.vocab.ids == original.vocab.ids
    assert loaded.meta["source"]["version"] == original.meta["version"]
    assert loaded.meta["privacy"] == PRIVACY  # the full accounting stays in the store
    scorer = CheckpointScorer(loaded, bf16=False)
    assert scorer.version == announced.version  # recommendations name the store version
    expected = CheckpointScorer(original, bf16=False).score_many([["a", "b"]], k=3)
    assert scorer.score_many([["a", "b"]], k=3) == expected


def test_store_layout_has_a_manifest_and_no_optimizer_state(
    store: ModelStore, publish: Callable[..., str]
) -> None:
    version = publish()
    folder = store.root / version
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MANIFEST, "meta.json", "vocab.json", "weights.pt"]
    )
    entries = json.loads((folder / MANIFEST).read_text())["files"]
    assert set(entries) == {"meta.json", "vocab.json", "weights.pt"}
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []


def test_an_updated_model_is_published_with_its_parent(
    store: ModelStore, publish: Callable[..., str]
) -> None:
    parent = publish()
    checkpoint = store.load(parent)
    with torch.no_grad():
        next(checkpoint.model.parameters()).add_(0.5)  # "learned while serving"
    child = store.publish(checkpoint, parent=parent, metrics={"MRR@20": 18.5}, privacy=None)

    assert [info.version for info in store.versions()] == [child.version, parent]
    assert store.info(child.version).parent == parent
    assert child.privacy is None and store.info(child.version).privacy is None
    assert _same_weights(store.load(child.version).model, checkpoint.model)


def test_publish_refuses_an_unknown_parent_and_bad_metrics(
    store: ModelStore, tmp_path: Path, train_run: TrainRun
) -> None:
    run = train_run(tmp_path / "run")
    with pytest.raises(UnknownVersion):
        store.publish(run, parent="seq-nope", metrics={}, privacy=None)
    with pytest.raises(ValueError, match="finite"):
        store.publish(run, parent=None, metrics={"MRR@20": float("nan")}, privacy=None)
    with pytest.raises(ValueError, match="epsilon"):
        store.publish(run, parent=None, metrics={}, privacy={"delta": 1e-5})
    with pytest.raises(RegistryError, match="not a readable checkpoint"):
        store.publish(tmp_path / "missing", parent=None, metrics={}, privacy=None)
    assert store.versions() == []


def test_a_checkpoint_that_does_not_load_is_never_stored(
    store: ModelStore, tmp_path: Path, train_run: TrainRun
) -> None:
    run = train_run(tmp_path / "run")
    meta_path = run / "epoch-0001" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["d_model"] = 32  # the weights are 16 wide
    meta_path.write_text(json.dumps(meta))

    with pytest.raises(ModelRejected, match="weights do not load"):
        store.publish(run, parent=None, metrics={}, privacy=None)
    assert list(store.root.iterdir()) == []  # no version, no staging folder left


def _flip_a_byte(folder: Path) -> None:
    weights = bytearray((folder / "weights.pt").read_bytes())
    weights[len(weights) // 2] ^= 0xFF  # torch.load alone would accept this one
    (folder / "weights.pt").write_bytes(bytes(weights))


def _truncate(folder: Path) -> None:
    data = (folder / "weights.pt").read_bytes()
    (folder / "weights.pt").write_bytes(data[: len(data) // 2])


def _edit_meta(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["metrics"]["MRR@20"] = 99.0
    (folder / "meta.json").write_text(json.dumps(meta))


def _refresh_manifest(folder: Path) -> None:
    """Rewrite the manifest as a careless tool would, so the content checks must catch it."""
    names = ("meta.json", "vocab.json", "weights.pt")
    (folder / MANIFEST).write_bytes(manifest({n: (folder / n).read_bytes() for n in names}))


def _unloadable_weights(folder: Path) -> None:
    (folder / "weights.pt").write_bytes(b"not a torch file")
    _refresh_manifest(folder)


def _wrong_config(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["config"]["n_items"] = 7  # embedding tables no longer fit the weights
    (folder / "meta.json").write_text(json.dumps(meta))
    _refresh_manifest(folder)


def _unreadable_meta(folder: Path) -> None:
    (folder / "meta.json").write_text("{not json")
    _refresh_manifest(folder)


def _foreign_meta_version(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["version"] = "seq-somebody-else"
    (folder / "meta.json").write_text(json.dumps(meta))
    _refresh_manifest(folder)


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "flipped weights byte": (_flip_a_byte, "weights.pt does not match its SHA-256"),
    "truncated weights": (_truncate, "weights.pt has"),
    "edited meta": (_edit_meta, "meta.json has"),
    "missing manifest": (lambda f: (f / MANIFEST).unlink(), "no MANIFEST.json"),
    "garbled manifest": (lambda f: (f / MANIFEST).write_text("[1, 2"), "unreadable MANIFEST"),
    "missing vocab": (lambda f: (f / "vocab.json").unlink(), "cannot read vocab.json"),
    "unloadable weights": (_unloadable_weights, "weights do not load"),
    "weights that do not fit the config": (_wrong_config, "weights do not load"),
    "unreadable meta": (_unreadable_meta, "unreadable meta.json"),
    "meta of another version": (_foreign_meta_version, "meta.json names version"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_a_corrupt_checkpoint_is_rejected(
    store: ModelStore, publish: Callable[..., str], corruption: str
) -> None:
    damage, reason = CORRUPTIONS[corruption]
    version = publish()
    damage(store.root / version)
    with pytest.raises(ModelRejected, match=reason) as rejected:
        store.load(version)
    assert rejected.value.version == version


def test_a_version_that_fails_verification_is_marked_and_current_kept(
    store: ModelStore, publish: Callable[..., str]
) -> None:
    good, bad = publish(), publish()
    store.set_current(good)
    _truncate(store.root / bad)

    with pytest.raises(ModelRejected):
        store.set_current(bad)
    assert store.current() == good
    info = store.info(bad)
    assert info.status == "rejected" and info.reason is not None
    assert "weights.pt has" in info.reason
    with pytest.raises(ModelRejected, match="marked rejected"):
        store.load(bad)  # even a worker that never saw the file damage refuses it now


def test_rollback_to_an_older_version_and_refusals(
    store: ModelStore, publish: Callable[..., str]
) -> None:
    first = publish()
    second = publish(parent=first)
    third = publish(parent=second)
    store.set_current(third)

    store.set_current(first)  # the rollback
    assert store.current() == first
    assert (store.root / CURRENT).read_text() == f"{first}\n"

    store.mark_rejected(second, "MRR@20 fell from 18 to 12 (more than 1)")
    with pytest.raises(ModelRejected, match="marked rejected: MRR@20 fell"):
        store.set_current(second)
    for unknown in ("seq-2000-01-01T000000Z-00000000", "../models", "", CURRENT):
        with pytest.raises(UnknownVersion):
            store.set_current(unknown)
    assert store.current() == first
    statuses = {info.version: info.status for info in store.versions()}
    assert statuses == {first: "accepted", second: "rejected", third: "accepted"}


def test_versions_of_an_empty_or_missing_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "nowhere")
    assert store.versions() == [] and store.current() is None


def test_a_version_with_unreadable_meta_is_listed_as_rejected(
    store: ModelStore, publish: Callable[..., str]
) -> None:
    version = publish()
    (store.root / version / "meta.json").write_text("")
    [info] = store.versions()
    assert info.status == "rejected" and "meta.json" in str(info.reason)
    with pytest.raises(ModelRejected):
        store.announcement(version)


def test_the_announcement_of_a_stored_version_matches_its_publication(
    store: ModelStore, tmp_path: Path, train_run: TrainRun
) -> None:
    announced = store.publish(
        train_run(tmp_path / "run"), parent=None, metrics=METRICS, privacy=PRIVACY
    )
    assert store.announcement(announced.version) == announced
    assert announced.key == b"intentstream-scorer"


def test_the_announcement_pins_the_manifest_and_loading_checks_the_pin(
    store: ModelStore, publish: Callable[..., str]
) -> None:
    version = publish()
    pinned = store.announcement(version).manifest
    assert pinned is not None and len(pinned) == 64
    store.load(version, pinned=pinned)
    with pytest.raises(ModelRejected, match="not the one its announcement names"):
        store.load(version, pinned="0" * 64)


def test_prune_keeps_the_newest_and_current_with_its_parent(
    store: ModelStore, publish: Callable[..., str]
) -> None:
    oldest = publish()
    second = publish(parent=oldest)
    middle = [publish() for _ in range(3)]
    newest = [publish() for _ in range(2)]
    store.set_current(second)
    assert sorted(store.prune(keep=2)) == sorted(middle)
    assert {info.version for info in store.versions()} == {oldest, second, *newest}
    assert not list(store.root.glob(".deleted-*"))
    assert store.prune(keep=2) == []
    with pytest.raises(ValueError):
        store.prune(keep=0)


# Announcements ----------------------------------------------------------------------

ANNOUNCEMENT = Announcement(
    name="intentstream-scorer",
    version="seq-2026-11-28T030000Z-ab12cd34",
    parent="seq-2026-11-28T020000Z-1f2e3d4c",
    uri="/models/seq-2026-11-28T030000Z-ab12cd34",
    metrics={"MRR@20": 18.1},
    privacy=PrivacySpend(epsilon=0.93, delta=1e-5),
    created_at=1_764_298_800.0,
)


def test_announcement_round_trip_and_format() -> None:
    data = ANNOUNCEMENT.to_bytes()
    assert Announcement.from_bytes(data) == ANNOUNCEMENT
    assert orjson.loads(data) == {
        "name": "intentstream-scorer",
        "version": "seq-2026-11-28T030000Z-ab12cd34",
        "parent": "seq-2026-11-28T020000Z-1f2e3d4c",
        "uri": "/models/seq-2026-11-28T030000Z-ab12cd34",
        "metrics": {"MRR@20": 18.1},
        "privacy": {"epsilon": 0.93, "delta": 1e-5},
        "created_at": 1_764_298_800.0,
    }
    with_extra = orjson.loads(data) | {"added_later": [1, 2]}
    assert Announcement.from_bytes(orjson.dumps(with_extra)) == ANNOUNCEMENT


def _with(**changes: object) -> bytes:
    # The standard library, not orjson: it writes integers beyond 64 bits too.
    return json.dumps(json.loads(ANNOUNCEMENT.to_bytes()) | changes).encode()


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"\xff\xfe",
        b"[]",
        b'"intentstream"',
        b'{"name": "intentstream-scorer"}',
        _with(version="../../etc"),
        _with(parent=""),
        _with(name=""),
        _with(uri=None),
        _with(metrics={"MRR@20": "high"}),
        _with(metrics={"MRR@20": True}),
        _with(metrics=[1]),
        _with(privacy={"epsilon": -1, "delta": 1e-5}),
        _with(privacy={"epsilon": 1.0}),
        _with(privacy={"epsilon": 1.0, "delta": 1.0}),
        _with(created_at="yesterday"),
        _with(created_at=-1),
        _with(created_at=10**400),
        _with(manifest="ab12"),
        _with(signature="Z" * 64),
        _with(privacy={"epsilon": 1.0, "delta": 1e-6, "accountant": 3}),
        b'{"created_at": 1e999}',
    ],
)
def test_a_malformed_announcement_is_rejected(data: bytes | None) -> None:
    with pytest.raises(BadAnnouncement):
        Announcement.from_bytes(data)


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_bad_announcement(data: bytes) -> None:
    with contextlib.suppress(BadAnnouncement):
        Announcement.from_bytes(data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            name: _JSON
            for name in ("name", "version", "parent", "uri", "metrics", "privacy", "created_at")
        },
    )
)
def test_random_json_objects_parse_or_raise_bad_announcement(body: dict[str, object]) -> None:
    try:
        data = orjson.dumps(body)
    except orjson.JSONEncodeError:  # integers beyond 64 bits
        return
    try:
        parsed = Announcement.from_bytes(data)
    except BadAnnouncement:
        return
    assert Announcement.from_bytes(parsed.to_bytes()) == parsed


# Guard ------------------------------------------------------------------------------


def test_the_guard_rejects_a_drop_beyond_the_limit_only() -> None:
    baseline = {"MRR@20": 18.0, "P@20": 50.0}
    assert guard({"MRR@20": 17.5, "P@20": 49.5}, baseline, max_drop=1.0).accepted
    assert guard({"MRR@20": 30.0, "P@20": 60.0}, baseline, max_drop=0.0).accepted
    verdict = guard({"MRR@20": 18.0, "P@20": 45.0}, baseline, max_drop=1.0)
    assert not verdict.accepted and verdict.reason.startswith("P@20 fell")
    assert not guard({"P@20": 50.0}, baseline, max_drop=1.0).accepted  # MRR@20 missing
    assert not guard({"MRR@20": float("nan")}, baseline, max_drop=1.0, keys=["MRR@20"]).accepted
    assert guard({"MRR@20": 1.0, "P@20": 50.0}, baseline, max_drop=1.0, keys=["P@20"]).accepted
    assert guard({}, {}, max_drop=1.0).accepted  # nothing to compare with yet
    with pytest.raises(ValueError):
        guard({}, baseline, max_drop=-1.0)


# Command line -----------------------------------------------------------------------


@pytest.fixture
def cli_output(monkeypatch: pytest.MonkeyPatch, store: ModelStore) -> Iterator[io.StringIO]:
    """The CLI's console, wide, into a buffer; the settings point at ``store``."""
    buffer = io.StringIO()
    monkeypatch.setenv("INTENTSTREAM_MODEL_STORE", str(store.root))
    monkeypatch.setenv("INTENTSTREAM_MASTER_KEY", "00" * 32)  # signs the announcements
    monkeypatch.setattr(streams.ops.commands.models, "console", Console(file=buffer, width=250))
    yield buffer


def _run(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return int(args.func(args, build_settings(args)))


def test_model_list_shows_versions_status_and_current(
    store: ModelStore, publish: Callable[..., str], cli_output: io.StringIO
) -> None:
    first = publish()
    second = publish(parent=first, **{"MRR@20": 19.25, "P@20": 52.5})
    store.set_current(first)
    store.mark_rejected(second, "MRR@20 fell")

    assert _run("model", "list") == 0
    lines = cli_output.getvalue().splitlines()
    [first_row] = [line for line in lines if line.lstrip("│ ").startswith(("*", first))]
    [second_row] = [line for line in lines if second in line and first in line]
    assert "*" in first_row and "accepted" in first_row and "0.9" in first_row
    assert "rejected: MRR@20 fell" in second_row and "MRR@20 19.25" in second_row
    assert lines.index(second_row) < lines.index(first_row)  # newest first


def test_model_list_of_an_empty_store(cli_output: io.StringIO) -> None:
    assert _run("model", "list") == 0
    assert "versions in" in cli_output.getvalue()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port that refuses connections: bound (never listening) until the test ends."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def test_rollback_with_no_broker_changes_nothing(
    store: ModelStore, publish: Callable[..., str], cli_output: io.StringIO, closed_port: int
) -> None:
    first, second = publish(), publish()
    store.set_current(second)
    with pytest.raises(BrokerError, match="CURRENT is unchanged"):
        _run("model", "rollback", first, "--bootstrap", f"127.0.0.1:{closed_port}")
    assert store.current() == second


def test_rollback_to_a_rejected_or_unknown_version_fails_before_the_broker(
    store: ModelStore, publish: Callable[..., str], cli_output: io.StringIO, closed_port: int
) -> None:
    first, second = publish(), publish()
    store.set_current(second)
    store.mark_rejected(first, "bad")
    # No broker is running: these must fail on the store's checks, with exit status 2.
    assert _run("model", "rollback", first, "--bootstrap", f"127.0.0.1:{closed_port}") == 2
    assert _run("model", "rollback", "seq-nope", "--bootstrap", "127.0.0.1:1") == 2
    assert store.current() == second


def test_publish_with_no_broker_stores_the_version_but_keeps_current(
    store: ModelStore,
    tmp_path: Path,
    train_run: TrainRun,
    cli_output: io.StringIO,
    closed_port: int,
) -> None:
    run = train_run(tmp_path / "run", privacy=PRIVACY)
    with pytest.raises(BrokerError):
        _run("model", "publish", str(run), "--bootstrap", f"127.0.0.1:{closed_port}")
    [info] = store.versions()
    assert info.metrics == METRICS and info.privacy == PrivacySpend(0.9, 1e-5)
    assert store.current() is None


def test_a_checkpoint_object_keeps_its_meta(
    store: ModelStore, tmp_path: Path, train_run: TrainRun
) -> None:
    original = load_checkpoint(train_run(tmp_path / "run"))
    updated = Checkpoint(
        model=original.model, vocab=original.vocab, meta=original.meta, path=Path("unused")
    )
    announced = store.publish(updated, parent=None, metrics={}, privacy=None)
    meta = store.load(announced.version).meta
    assert meta["epoch"] == 1 and meta["config"] == original.model.config.to_dict()
    assert meta["source"]["path"] == "unused"


def test_the_served_ranker_travels_with_its_version_and_is_verified(
    store: ModelStore, tmp_path: Path, train_run: TrainRun
) -> None:
    run = train_run(tmp_path / "run")
    chosen = load_checkpoint(run)
    n_items = chosen.model.config.n_items
    parts = RankerParts(
        weights=FusionWeights.mix(transformer=0.6, recent=0.2),
        sessions=item_matrix([[1, 2], [2, 3]], n_items=n_items),
        validation={"P@20": 12.5},
    )
    save_ranker(chosen.path, parts)
    version = store.publish(run, parent=None, metrics=METRICS, privacy=None).version
    loaded = store.load(version)
    assert loaded.ranking is not None and loaded.ranking.weights == parts.weights
    # The learner's update of it keeps the ranker's parts.
    child = store.publish(loaded, parent=version, metrics=METRICS, privacy=None).version
    kept = store.load(child).ranking
    assert kept is not None and kept.weights == parts.weights
    assert kept.sessions is not None and (kept.sessions != parts.sessions).nnz == 0
    ranker_file = store.root / version / RANKER_FILE
    ranker_file.write_bytes(RankerParts(FusionWeights(0.0, 0.0, 1.0)).to_bytes())
    with pytest.raises(ModelRejected, match=RANKER_FILE):
        store.load(version)  # a swapped mix is not the published one


def test_the_calibrator_travels_with_its_version_and_is_verified(
    store: ModelStore, tmp_path: Path, train_run: TrainRun
) -> None:
    run = train_run(tmp_path / "run")
    calibrator = ClickCalibrator(edges=(0, 1, 5), clicks=(0.3, 0.05), purchases=(0.02, 0.0))
    save_calibrator(load_checkpoint(run).path, calibrator)
    version = store.publish(run, parent=None, metrics=METRICS, privacy=None).version
    loaded = store.load(version)
    assert loaded.calibrator == calibrator
    assert CheckpointScorer(loaded).calibrator == calibrator  # what the ads stage reads
    child = store.publish(loaded, parent=version, metrics=METRICS, privacy=None).version
    assert store.load(child).calibrator == calibrator
    inflated = ClickCalibrator(edges=(0, 1, 5), clicks=(0.9, 0.5), purchases=(0.02, 0.0))
    (store.root / version / CALIBRATION_FILE).write_text(json.dumps(inflated.to_dict()))
    with pytest.raises(ModelRejected, match=CALIBRATION_FILE):
        store.load(version)  # a calibrator swapped in the store is not served


def test_a_manifest_listing_a_file_of_its_own_is_refused(
    store: ModelStore, publish: Callable[..., str]
) -> None:
    version = publish()
    folder = store.root / version
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != MANIFEST}
    (folder / "extra.py").write_bytes(b"print('hi')")
    files["extra.py"] = b"print('hi')"
    (folder / MANIFEST).write_bytes(manifest(files))
    with pytest.raises(ModelRejected, match="nothing but"):
        store.load(version)

"""The ``intentstream`` command line: brokers, topics, worker, replay, tail, demo, models.

Every command takes ``--bootstrap HOST:PORT`` (or ``INTENTSTREAM_KAFKA``) to use an
existing cluster, and ``--kind tansu|kafka`` for the local broker / quirk handling.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from streams.errors import IntentstreamError
from streams.settings import Settings

log = logging.getLogger("intentstream")
console = Console()

Command = Callable[[argparse.Namespace, Settings], int]


def build_settings(args: argparse.Namespace) -> Settings:
    """Environment first, then the explicit command-line flags on top."""
    overrides: dict[str, object] = {}
    if args.bootstrap:
        overrides["kafka"] = args.bootstrap
    if args.kind:
        overrides["broker_kind"] = args.kind
    elif args.bootstrap:
        overrides["broker_kind"] = "kafka"  # an existing cluster is Apache Kafka unless told
    return Settings(**overrides)  # type: ignore[arg-type]


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.brokers import local_broker

    if settings.kafka:
        log.info("using the existing cluster at %s; no local broker is managed", settings.kafka)
        return 0
    broker = local_broker(settings.broker_kind, home=settings.home, port=args.port)
    if args.action == "start":
        address = broker.start()
        console.print(f"{broker.kind} broker ready at {address}")
    elif args.action == "stop":
        stopped = broker.stop()
        console.print(f"{broker.kind} broker {'stopped' if stopped else 'was not running'}")
    else:
        status = broker.status()
        state = f"running (pid {status.pid})" if status.running else "stopped"
        console.print(f"{status.kind} broker at {status.bootstrap}: {state}; log {status.log_file}")
        return 0 if status.running else 3
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.admin import ensure_topics

    created = ensure_topics(settings)
    console.print(
        f"created {len(created)} topic(s): {', '.join(created) or '-'} on {settings.bootstrap}"
    )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker.process import run_worker

    run_worker(settings)
    return 0


def cmd_learn(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.admin import ensure_topics
    from streams.learner.run import learn_forever
    from streams.pipeline.pseudonyms import Pseudonymizer, load_pseudonym_key

    ensure_topics(settings)
    learn_forever(settings, pseudonymizer=Pseudonymizer(load_pseudonym_key(settings)))
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.admin import ensure_topics
    from streams.ops.replay import replay

    ensure_topics(settings)
    stats = asyncio.run(
        replay(settings, args.file, rate=args.rate, speedup=args.speedup, limit=args.limit)
    )
    console.print(f"sent {stats.sent} events in {stats.seconds:.1f} s to {settings.events_topic}")
    return 0


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.tail import tail

    asyncio.run(tail(settings, from_beginning=args.from_beginning, limit=args.limit, raw=args.raw))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.demo import DemoOptions, run_demo

    options = DemoOptions(data=args.data, rate=args.rate, speedup=args.speedup, limit=args.limit)
    return run_demo(settings, options)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from model.training.fit import fit
    from model.training.train import TrainConfig

    train_options = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "negatives": args.negatives,
        "seed": args.seed,
        "max_minutes": args.minutes,
        "dp_epsilon": args.dp_epsilon,
        "dp_delta": args.dp_delta,
        "dp_max_grad_norm": args.dp_max_grad_norm,
        "dp_accountant": args.dp_accountant,
    }
    try:
        config = TrainConfig(**{k: v for k, v in train_options.items() if v is not None})
    except ValueError as exc:
        log.error("invalid training options: %s", exc)
        return 2
    scorer_options = {
        "d_model": args.d_model,
        "n_layers": args.layers,
        "dropout": args.dropout,
        "embedding_dropout": args.embedding_dropout,
    }
    scorer = {k: v for k, v in scorer_options.items() if v is not None}
    reports = fit(args.data, args.out, train_config=config, scorer_options=scorer)
    for report in reports:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in report.metrics.items())
        console.print(
            f"epoch {report.epoch}: loss {report.loss:.3f}, {report.seconds:.0f} s, "
            f"validation {shown}"
        )
    privacy = reports[-1].privacy if reports else None
    if privacy:
        console.print(
            f"differential privacy per {privacy['unit']}: epsilon {privacy['epsilon']:.3f} spent "
            f"(target {privacy['target_epsilon']}), delta {privacy['delta']:g}, "
            f"clip {privacy['max_grad_norm']:g}, noise multiplier {privacy['noise_multiplier']:.3f}"
        )
    console.print(f"checkpoints in {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from model.evaluation.evaluate import (
        baseline_factories,
        checkpoint_factory,
        fused_factory,
        run_evaluation,
    )

    models = baseline_factories() if args.baselines else {}
    for path in args.checkpoint:
        models[f"transformer ({path.name})"] = checkpoint_factory(path)
        if args.fuse_knn is not None:
            name = f"transformer ({path.name}) + V-SKNN, w={args.fuse_knn}, r={args.fuse_repeat}"
            models[name] = fused_factory(path, args.fuse_knn, repeat=args.fuse_repeat)
    console.print(run_evaluation(args.data, models=models, progress=True))
    return 0


def cmd_keygen(args: argparse.Namespace, settings: Settings) -> int:
    from streams.pipeline.keys import write_new_key

    keys = {"pseudonym": settings.pseudonym_key_file, "master": settings.master_key_file}
    for name, path in keys.items():
        if write_new_key(path):
            console.print(f"wrote a new {name} key to {path}")
        else:
            console.print(f"key file already exists, kept: {path}")
    return 0  # idempotent: a deployment may run it at every start


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    from online_learning.errors import OnlineLearningError
    from streams.kafka import announce
    from streams.ops.models import versions_table

    try:
        if args.action == "list":
            console.print(versions_table(announce.store_of(settings)))
        elif args.action == "publish":
            published = announce.publish(settings, args.checkpoint, parent=args.parent)
            console.print(f"published {published.version} to {published.uri}; now current")
        else:
            restored = announce.rollback(settings, args.version)
            console.print(f"{restored.version} is current again; workers are swapping to it")
    except OnlineLearningError as exc:
        log.error("%s", exc)
        return 2
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from rich.live import Live

    from streams.ops.recording import to_line
    from streams.ops.status import default_urls, scrape, status_view

    urls = args.url or default_urls([settings.metrics_port, settings.learn_metrics_port])
    before = [scrape(url) for url in urls]
    time.sleep(args.interval)
    now = [scrape(url) for url in urls]
    if not args.watch:
        console.print(status_view(now, before))
        return 0 if all(s.error is None for s in now) else 3
    with Live(console=console, auto_refresh=False) as live:
        while True:
            live.update(status_view(now, before), refresh=True)
            if args.record:
                with open(args.record, "ab") as out:
                    out.writelines(map(to_line, now))
            time.sleep(args.watch)
            before, now = now, [scrape(url) for url in urls]


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.report import write_report

    try:
        summary = write_report(args.recording, args.out)
    except (OSError, ValueError) as exc:
        log.error("cannot render %s: %s", args.recording, exc)
        return 2
    console.print(
        f"report of {summary.events:,.0f} events in {summary.seconds:,.0f} s written to {args.out}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap", help="existing Kafka cluster (env INTENTSTREAM_KAFKA)")
    common.add_argument("--kind", choices=["tansu", "kafka"], help="local broker kind")
    common.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser = argparse.ArgumentParser(prog="intentstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    broker = sub.add_parser("broker", parents=[common], help="start/stop/status a local broker")
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.add_argument("--port", type=int, help="listener port (default 9092 tansu, 9192 kafka)")
    broker.set_defaults(func=cmd_broker)

    sub.add_parser("topics", parents=[common], help="create missing topics").set_defaults(
        func=cmd_topics
    )
    sub.add_parser("worker", parents=[common], help="run a stream worker").set_defaults(
        func=cmd_worker
    )
    sub.add_parser(
        "learn", parents=[common], help="learn from the stream and publish model versions"
    ).set_defaults(func=cmd_learn)
    sub.add_parser("keygen", parents=[common], help="create missing key files").set_defaults(
        func=cmd_keygen
    )

    replay = sub.add_parser("replay", parents=[common], help="produce an events file")
    replay.add_argument("file", type=Path, help="canonical events CSV/JSONL (optionally .gz)")
    _add_pace_options(replay)
    replay.set_defaults(func=cmd_replay)

    tail = sub.add_parser("tail", parents=[common], help="print recommendations as they arrive")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--limit", type=int, help="stop after N recommendations")
    tail.add_argument("--raw", action="store_true", help="print the JSON as produced")
    tail.set_defaults(func=cmd_tail)

    train = sub.add_parser(
        "train",
        parents=[common],
        help="train the sequence scorer (unset options: defaults of TrainConfig/ScorerConfig)",
    )
    train.add_argument(
        "data", type=Path, help="data folder (e.g. ../shared/data/diginetica) or file"
    )
    train.add_argument("--out", type=Path, required=True, help="run folder for checkpoints")
    train.add_argument("--epochs", type=int)
    train.add_argument("--minutes", type=float, help="stop after the epoch that passes this")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--negatives", type=int, help="0 = full softmax")
    train.add_argument("--d-model", type=int)
    train.add_argument("--layers", type=int)
    train.add_argument("--dropout", type=float, help="inside the blocks")
    train.add_argument("--embedding-dropout", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument(
        "--dp-epsilon", type=float, help="train with DP-SGD (Opacus) to this epsilon per session"
    )
    train.add_argument("--dp-delta", type=float, help="with --dp-epsilon (default 1e-5)")
    train.add_argument(
        "--dp-max-grad-norm", type=float, help="per-session clipping norm (default 1.0)"
    )
    train.add_argument("--dp-accountant", choices=["prv", "rdp"], help="default prv")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", parents=[common], help="SR-GNN protocol table")
    evaluate.add_argument("data", type=Path, help="data folder or canonical events file")
    evaluate.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="run or checkpoint folder to evaluate (repeatable)",
    )
    evaluate.add_argument("--no-baselines", dest="baselines", action="store_false")
    evaluate.add_argument(
        "--fuse-knn",
        type=float,
        metavar="W",
        help="also score W * transformer + (1 - W) * V-SKNN (pick W with bench/quality.py)",
    )
    evaluate.add_argument(
        "--fuse-repeat",
        type=float,
        default=0.0,
        metavar="R",
        help="with --fuse-knn: weight of the recent-items part (default 0)",
    )
    evaluate.set_defaults(func=cmd_evaluate)

    demo = sub.add_parser("demo", parents=[common], help="broker + worker + real data, live")
    demo.add_argument(
        "--data",
        default="retailrocket",
        help="retailrocket | yoochoose | diginetica | a file path (default retailrocket)",
    )
    _add_pace_options(demo, default_rate=2000.0)
    demo.set_defaults(func=cmd_demo)

    status = sub.add_parser("status", parents=[common], help="live view of running processes")
    status.add_argument(
        "--url",
        action="append",
        help="a process's metrics endpoint (repeatable; default: this host's worker and "
        "learner ports, INTENTSTREAM_METRICS_PORT and INTENTSTREAM_LEARN_METRICS_PORT)",
    )
    status.add_argument(
        "--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C"
    )
    status.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between the two scrapes that rates and percentiles compare (default 1)",
    )
    status.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="with --watch: append every scrape to FILE (a recording for `intentstream report`)",
    )
    status.set_defaults(func=cmd_status)

    report = sub.add_parser(
        "report", parents=[common], help="render a metrics recording to an HTML report"
    )
    report.add_argument(
        "recording", type=Path, help="a recording (the demo's runs/*/metrics.jsonl, or --record)"
    )
    report.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file to write")
    report.set_defaults(func=cmd_report)

    model = sub.add_parser("model", help="list, publish or roll back model versions")
    actions = model.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="versions in the model store")
    publish = actions.add_parser(
        "publish", parents=[common], help="import a training checkpoint, announce it"
    )
    publish.add_argument("checkpoint", type=Path, help="run or checkpoint folder of `train`")
    publish.add_argument("--parent", help="version it was derived from (default: none)")
    rollback = actions.add_parser(
        "rollback", parents=[common], help="announce an older version and make it current"
    )
    rollback.add_argument("version", help="an accepted version (see `intentstream model list`)")
    model.set_defaults(func=cmd_model)
    return parser


def _add_pace_options(parser: argparse.ArgumentParser, default_rate: float | None = None) -> None:
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=float,
        default=default_rate,
        help=f"events per second (default: {default_rate or 'as fast as possible'}; 0 = max)",
    )
    pace.add_argument("--speedup", type=float, help="the log's own pace times this factor")
    parser.add_argument("--limit", type=int, help="replay at most N events")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``intentstream`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(message)s",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if getattr(args, "rate", None) == 0:
        args.rate = None
    try:
        settings = build_settings(args)
        return int(args.func(args, settings))
    except IntentstreamError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

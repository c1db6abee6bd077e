"""The ``intentstream`` command line: brokers, topics, worker, events, catalogue, dead letters,
models, data.

Run ``intentstream --help``; global options come before the command
(``intentstream --bootstrap-server HOST:PORT tail``). Every failure the user can fix
ends in one line on stderr naming the flag or ``INTENTSTREAM_*`` variable to change,
with exit status 2 (``streams.ops.failures``); the Kafka clients' own logs show only
with ``--verbose``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.logging import RichHandler

from streams.ops import parser
from streams.ops.failures import EXIT_USAGE, CommandError, explain
from streams.ops.parser import Command
from streams.ops.verbs import cmd_config, cmd_dlq, cmd_erase, cmd_items, cmd_send, cmd_tail
from streams.settings import Settings, unknown_variables

if TYPE_CHECKING:
    from online_learning.registry import ModelStore

log = logging.getLogger("intentstream")
console = Console(soft_wrap=True)  # a line stays one line, in a pipe too

#: Loggers of the Kafka and Faust client libraries: a broker that does not answer makes
#: them log dozens of lines a second, which only ``--verbose`` shows.
CLIENT_LOGGERS = ("kafka", "aiokafka", "faust", "mode")
#: Of those, the ones a long-running worker or learner keeps at WARNING: their warnings
#: are an operator's signal there (the worker's own level is INTENTSTREAM_WORKER_LOGLEVEL).
PROCESS_LOGGERS = ("aiokafka", "faust", "mode")


def build_settings(args: argparse.Namespace) -> Settings:
    """Environment first, then the explicit command-line flags on top."""
    return Settings(**parser.flag_overrides(args))  # type: ignore[arg-type]


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
    from streams.kafka.admin import check_topics, ensure_topics

    if args.check:
        differences = check_topics(settings)
        for difference in differences:
            fix = (
                "`intentstream topics` fixes it"
                if difference.fixed_by_topics
                else "fix with the cluster's tools"
            )
            console.print(f"{difference} ({difference.why}; {fix})", highlight=False)
        if not differences:
            console.print(f"every topic on {settings.bootstrap} is as the product needs it")
        return 1 if differences else 0
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

    _check_events_file(args.file)
    ensure_topics(settings)
    stats = asyncio.run(
        replay(settings, args.file, rate=args.rate, speedup=args.speedup, limit=args.limit)
    )
    console.print(f"sent {stats.sent} events in {stats.seconds:.1f} s to {settings.events_topic}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.demo import DemoOptions, run_demo

    options = DemoOptions(
        data=args.data,
        rate=args.rate,
        speedup=args.speedup,
        limit=args.limit,
        model=args.model,
        port=args.port,
    )
    return run_demo(settings, options)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from model.training.fit import fit
    from model.training.train import TrainConfig

    train_options = {
        "epochs": args.epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "lr_half_life": args.lr_half_life,
        "negatives": args.negatives,
        "dp_negatives": args.dp_negatives,
        "seed": args.seed,
        "max_minutes": args.minutes,
        "dp_epsilon": args.dp_epsilon,
        "dp_delta": args.dp_delta,
        "dp_max_grad_norm": args.dp_max_grad_norm,
        "dp_accountant": args.dp_accountant,
        "dp_vocab_epsilon": args.dp_vocab_epsilon,
        "dp_vocab_items": args.dp_vocab_items,
        "dp_memory_epsilon": args.dp_memory_epsilon,
        "dp_validation_epsilon": args.dp_validation_epsilon,
    }
    try:
        config = TrainConfig(**{k: v for k, v in train_options.items() if v is not None})
    except ValueError as exc:
        _say(f"error: invalid training options: {exc}")
        return EXIT_USAGE
    scorer_options = {
        "d_model": args.d_model,
        "n_layers": args.layers,
        "dropout": args.dropout,
        "embedding_dropout": args.embedding_dropout,
        "repeat": args.repeat,
        "item_readout": args.item_readout,
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
            f"(DP-SGD target {privacy['target_epsilon']}), delta {privacy['delta']:g}, "
            f"clip {privacy['max_grad_norm']:g}, noise multiplier {privacy['noise_multiplier']:.3f}"
        )
        for part, what in (("vocabulary", "items"), ("memory", "pairs")):
            if part in privacy:
                spend = privacy[part]
                console.print(
                    f"of which the {part} ({spend[what]} {what}): epsilon "
                    f"{spend['epsilon']:g}, delta {spend['delta']:g}"
                )
        validation = privacy.get("validation_part")
        if validation:
            console.print(
                f"validation sessions (apart from the training ones): epsilon "
                f"{validation['epsilon']:.3g} over {validation['releases']} releases"
            )
    console.print(f"checkpoints in {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from model.evaluation.evaluate import baseline_factories, checkpoint_factory, run_evaluation
    from streams.ops.session_replay import replay_in_process, replay_plan, without_dp

    models = baseline_factories() if args.baselines else {}
    for path in args.checkpoint:
        models[f"{path.name}: transformer alone"] = checkpoint_factory(path, transformer_only=True)
        served = f"{path.name}: served ranker"
        if settings.full_ranking:
            models[f"{served}, every item"] = checkpoint_factory(path, full_ranking=True)
            continue
        models[f"{served} (candidates)"] = checkpoint_factory(path)
        if args.full_ranking:
            models[f"{served}, every item"] = checkpoint_factory(path, full_ranking=True)
    measured = []
    if args.stream_baseline:
        plan = replay_plan(args.data, warmup=True)
        for name, replayed in (
            ("DP releases on", settings),
            ("DP releases off", without_dp(settings)),
        ):
            served = replay_in_process(replayed, plan.warmup + plan.events, progress=True)
            measured.append((f"stream baseline, {name}", plan.quality(served)))
    console.print(run_evaluation(args.data, models=models, progress=True, measured=measured))
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


def cmd_rewrap(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.rewrap import rewrap
    from streams.pipeline.crypto import load_master_key
    from streams.pipeline.pseudonyms import load_pseudonym_key

    target = settings.model_copy(
        update={"master_key": None, "master_key_file": args.new_master_key_file}
    )
    report = rewrap(
        settings,
        old=load_master_key(settings),
        new=load_master_key(target),
        pseudonym=load_pseudonym_key(settings),
    )
    announced = (
        f"; model {report.reannounced} announced again under the new key"
        if report.reannounced
        else ""
    )
    console.print(
        f"re-wrapped {report.rewrapped} user key(s) ({report.already} already under the new "
        f"key, {report.unreadable} unreadable){announced}; start the workers with "
        f"INTENTSTREAM_MASTER_KEY_FILE={args.new_master_key_file}"
    )
    return 0


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    from online_learning.errors import OnlineLearningError
    from streams.kafka import announce

    try:
        if args.action == "list":
            from streams.ops.models import versions_table

            console.print(versions_table(announce.store_of(settings)))
        elif args.action == "show":
            from streams.ops.models import version_view

            sys.stdout.write(version_view(announce.store_of(settings), args.version) + "\n")
        elif args.action == "prune":
            _prune(announce.store_of(settings), keep=args.keep, dry_run=args.dry_run)
        elif args.action == "publish":
            published = announce.publish(settings, args.checkpoint, parent=args.parent)
            console.print(f"published {published.version} to {published.uri}; now current")
        else:
            restored = announce.rollback(settings, args.version)
            console.print(f"{restored.version} is current again; workers are swapping to it")
    except OnlineLearningError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    return 0


def _prune(store: ModelStore, *, keep: int, dry_run: bool) -> None:
    from streams.ops.models import prune_plan, remove_versions

    plan = prune_plan(store, keep=keep)
    verb = "would remove" if dry_run else "removing"
    for info in plan.removed:
        sys.stdout.write(f"{verb} {info.version} ({info.status}, {info.path})\n")
    removed = [] if dry_run else remove_versions(store, plan.removed)
    done = f"would remove {len(plan.removed)}" if dry_run else f"removed {len(removed)}"
    sys.stdout.write(
        f"{done} version(s); kept {len(plan.kept)}: {plan.current} (current) and its "
        f"lineage{f', and the {keep} newest' if keep else ''}\n"
    )


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
        _say(f"error: cannot render {args.recording}: {exc}")
        return EXIT_USAGE
    console.print(
        f"report of {summary.events:,.0f} events in {summary.seconds:,.0f} s written to {args.out}"
    )
    return 0


def cmd_data(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.convert import convert

    try:
        converted = convert(args.format, args.source, args.out, progress=True)
    except (OSError, ValueError) as exc:
        _say(f"error: cannot convert {args.source}: {exc}")
        return EXIT_USAGE
    counts = ", ".join(f"{n:,} {kind}" for kind, n in sorted(converted.types.items()))
    console.print(f"wrote {converted.events:,} events ({counts or 'none'}) to {args.out}")
    return 0


HANDLERS: dict[str, Command] = {
    "broker": cmd_broker,
    "topics": cmd_topics,
    "worker": cmd_worker,
    "learn": cmd_learn,
    "keygen": cmd_keygen,
    "rewrap": cmd_rewrap,
    "replay": cmd_replay,
    "tail": cmd_tail,
    "send": cmd_send,
    "erase": cmd_erase,
    "items": cmd_items,
    "dlq": cmd_dlq,
    "config": cmd_config,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "demo": cmd_demo,
    "status": cmd_status,
    "report": cmd_report,
    "model": cmd_model,
    "data": cmd_data,
}


#: What ``intentstream --help`` says first.
DESCRIPTION = (
    "Real-time, privacy-preserving recommendations on Kafka. Global options go before the "
    "command (intentstream --bootstrap-server HOST:PORT tail); `intentstream COMMAND --help` "
    "shows a command's own."
)


def build_parser() -> argparse.ArgumentParser:
    """The ``intentstream`` argument parser, each command bound to its handler here."""
    return parser.build_parser(HANDLERS, description=DESCRIPTION)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``intentstream`` console script."""
    args = build_parser().parse_args(argv)
    configure_logging(args)
    for name, closest in unknown_variables(os.environ).items():
        hint = f"; did you mean {closest}?" if closest else ""
        _say(f"warning: {name} is not a setting, ignored{hint}")
    if getattr(args, "rate", None) == 0:
        args.rate = None
    settings = None
    try:
        settings = build_settings(args)
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = explain(exc, settings=settings)
        if message is None:  # not one the user can fix: a bug, with its traceback
            log.exception("intentstream %s failed", args.command)
            _say(f"error: {type(exc).__name__}: {_first(exc)} (a bug: please report it)")
            return 1
        if args.verbose:
            log.error("%s", exc, exc_info=exc)
        _say(f"error: {message}")
        return EXIT_USAGE


def configure_logging(args: argparse.Namespace) -> None:
    """Rich log lines on stderr at ``--log-level``; the client libraries quiet unless
    ``--verbose``."""
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(message)s",
        handlers=[
            RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        ],
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # which CPU build it loads
    if args.verbose:
        return
    long_running = args.command in ("worker", "learn")
    for name in CLIENT_LOGGERS:
        quiet = long_running and name in PROCESS_LOGGERS
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.CRITICAL + 1)


def _check_events_file(path: Path) -> None:
    """Read an events file's first event now: a bad header stops before any broker."""
    from streams.ops.event_log import read_events

    try:
        next(iter(read_events(path, limit=1)), None)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _first(exc: BaseException) -> str:
    return str(exc).strip().partition("\n")[0]


def _say(line: str) -> None:
    """One line on stderr, never wrapped."""
    sys.stderr.write(f"intentstream: {line}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())

"""The commands that set up and run the processes: ``broker``, ``topics``, ``worker``,
``learn``, ``keygen``, ``rewrap``, ``demo``, ``status``.

Bound to their names in ``streams.ops.cli``; run e.g. ``intentstream broker start``.
"""

from __future__ import annotations

import argparse
import logging

from rich.console import Console

from streams.settings import Settings

log = logging.getLogger("intentstream")
console = Console(soft_wrap=True)  # a line stays one line, in a pipe too


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
    from streams.kafka.topic_check import check_topics

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

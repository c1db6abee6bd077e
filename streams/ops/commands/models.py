"""The commands of models: ``train``, ``evaluate``, ``model list|show|publish|rollback|prune``.

Bound to their names in ``streams.ops.cli``; run e.g. ``intentstream model list``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from rich.console import Console

from streams.ops.failures import EXIT_USAGE, say
from streams.settings import Settings

if TYPE_CHECKING:
    from online_learning.registry import ModelStore

console = Console(soft_wrap=True)  # a line stays one line, in a pipe too


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
        say(f"error: invalid training options: {exc}")
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
            answered = replay_in_process(replayed, plan.warmup + plan.events, progress=True)
            measured.append((f"stream baseline, {name}", plan.quality(answered)))
    console.print(run_evaluation(args.data, models=models, progress=True, measured=measured))
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
        say(f"error: {exc}")
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

"""`rtml train fraud|recsys` and `rtml models list`.

    rtml train fraud                          generate 14 days (seed 0), train, evaluate, export
    rtml train recsys --days 3 --seed 1       the same for the recommender
    rtml train fraud --input data/history     train on an existing event log (files + labels)
    rtml models list                          the artifacts under <state dir>/models

Artifacts go to ``--models-dir`` (default ``<rtml_state_dir>/models``). Torch and the training
modules are imported in the handlers so ``rtml --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from rtml.arguments import non_negative_int, positive_float, positive_int
from rtml.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_DAYS = {"fraud": 14.0, "recsys": 3.0}
DEFAULT_USERS = 10_000
# Key metrics per kind, for `rtml models list`.
LIST_METRICS = {
    "fraud": ("test_average_precision", "test_roc_auc", "test_card_precision_at_100"),
    "recsys": ("test_recall_at_10", "test_recall_at_50", "test_ndcg_at_10"),
}


def models_dir(settings: Settings, args: argparse.Namespace) -> Path:
    return Path(args.models_dir) if args.models_dir else settings.rtml_state_dir / "models"


def register(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a model on a historical event log and export an artifact",
        description=(
            "Build a training set from a historical event log (by default one the generator "
            "writes to a temporary directory; or --input DIR), compute features point-in-time "
            "with the offline replay, split by event time, train, evaluate against baselines and "
            "export a versioned artifact. See docs/models.md."
        ),
    )
    kinds = train.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, text in (("fraud", "the fraud classifier"), ("recsys", "the two-tower recommender")):
        p = kinds.add_parser(kind, help=f"train {text}")
        data = p.add_argument_group("data")
        data.add_argument(
            "--input",
            type=Path,
            metavar="DIR",
            help="event log directory (one JSON-lines file per topic, and labels.jsonl for "
            "fraud); default: generate one",
        )
        data.add_argument(
            "--days",
            type=positive_float,
            default=DEFAULT_DAYS[kind],
            help=f"days to generate (default {DEFAULT_DAYS[kind]:g})",
        )
        data.add_argument(
            "--users",
            type=positive_int,
            default=DEFAULT_USERS,
            help=f"users to generate (default {DEFAULT_USERS})",
        )
        data.add_argument(
            "--keep-data",
            type=Path,
            metavar="DIR",
            help="write the generated log here (and keep it) instead of a temporary directory",
        )
        p.add_argument("--seed", type=non_negative_int, default=0, help="data and training seed")
        p.add_argument("--epochs", type=positive_int, help="maximum epochs")
        p.add_argument(
            "--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N"
        )
        p.add_argument(
            "--threads",
            type=positive_int,
            default=1,
            help="CPU threads for torch (default 1: these models are small; see docs/models.md)",
        )
        p.add_argument("--models-dir", metavar="DIR", help="default <rtml_state_dir>/models")
        p.add_argument("--no-export", action="store_true", help="evaluate only; write no artifact")
        p.set_defaults(run=train_command)

    models = subparsers.add_parser(
        "models",
        help="list trained model artifacts",
        description="List model artifacts: kind, version, creation time and key test metrics.",
    )
    actions = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list artifacts, oldest first")
    listing.add_argument("--kind", choices=("fraud", "recsys"), help="only this kind")
    listing.add_argument("--models-dir", metavar="DIR", help="default <rtml_state_dir>/models")
    listing.set_defaults(run=list_command)


def train_command(settings: Settings, args: argparse.Namespace) -> int:
    kind: str = args.kind
    out_dir = None if args.no_export else models_dir(settings, args)
    began = time.perf_counter()
    if args.input is not None:
        return _train(settings, args, kind, args.input, {"input": str(args.input)}, out_dir, began)
    if args.keep_data is not None:
        info = _generate(args, kind, args.keep_data)
        return _train(settings, args, kind, args.keep_data, info, out_dir, began)
    with tempfile.TemporaryDirectory(prefix=f"rtml-train-{kind}-") as tmp:
        info = _generate(args, kind, Path(tmp))
        return _train(settings, args, kind, Path(tmp), info, out_dir, began)


def _generate(args: argparse.Namespace, kind: str, directory: Path) -> dict[str, Any]:
    from training.data import generate_log

    t = time.perf_counter()
    info = generate_log(
        directory,
        seed=args.seed,
        days=args.days,
        users=args.users,
        fraud=kind == "fraud",
        recsys=kind == "recsys",
    )
    records = sum(v for k, v in info["records"].items() if k != "labels")
    print(
        f"generated {records:,} records ({args.days:g} days, {args.users:,} users, seed "
        f"{args.seed}) in {time.perf_counter() - t:.1f}s"
    )
    return info


def _train(
    settings: Settings,
    args: argparse.Namespace,
    kind: str,
    directory: Path,
    source: dict[str, Any],
    out_dir: Path | None,
    began: float,
) -> int:
    from training.data import describe_log, fraud_examples, read_log, recsys_examples

    t = time.perf_counter()
    event_log = read_log(directory, fraud=kind == "fraud", recsys=kind == "recsys")
    event_log.source = source
    pattern_rules: dict[str, Any] = {}
    if kind == "fraud":
        from features.patterns import CompiledRules, load_rules

        # The pipeline's pattern rules, so the model learns the pattern features it is served.
        rules = load_rules(settings.rtml_pattern_rules)
        pattern_rules = {
            "path": str(settings.rtml_pattern_rules),
            "version": rules.version,
            "fingerprint": CompiledRules(rules).fingerprint,
        }
        partitions = settings.rtml_topics.transactions.partitions
        examples: Any = fraud_examples(
            event_log, partitions=partitions, config=settings.rtml_features, rules=rules
        )
    else:
        partitions = settings.rtml_topics.user_events.partitions
        examples = recsys_examples(event_log, partitions=partitions)
    described = describe_log(event_log)
    print(
        f"replayed features of {len(examples):,} rows ({partitions} partitions, "
        f"{examples.stats.late} late dropped, {described['invalid_lines']} invalid lines "
        f"skipped) in {time.perf_counter() - t:.1f}s"
    )
    training_data = {"log": described, "partitions": partitions, "seed": args.seed}
    if pattern_rules:
        training_data["pattern_rules"] = pattern_rules
    overrides: dict[str, Any] = {"seed": args.seed, "device": args.device}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    t = time.perf_counter()
    if kind == "fraud":
        from training.fraud import FraudTrainConfig, train_fraud

        result: Any = train_fraud(
            examples,
            FraudTrainConfig(**overrides),
            models_dir=out_dir,
            training_data=training_data,
            num_threads=args.threads,
        )
    else:
        from training.recsys import RecsysTrainConfig, train_recsys

        result = train_recsys(
            examples,
            RecsysTrainConfig(**overrides),
            models_dir=out_dir,
            training_data=training_data,
            num_threads=args.threads,
        )
    print(f"trained and evaluated in {time.perf_counter() - t:.1f}s")
    print(format_report(result.report))
    total = time.perf_counter() - began
    if result.path is not None:
        print(f"artifact: {result.path}")
    print(f"total {total:.1f}s")
    return 0


def format_report(report: dict[str, Any]) -> str:
    """The evaluation as a small table: the model against its baselines on the test range."""
    test = report["test"]
    lines = [
        f"split: {report['split']['train']} | {report['split']['validation']} | "
        f"{report['split']['test']} (train | validation | test)"
    ]
    if report["kind"] == "fraud":
        k = next(key for key in test["model"] if key.startswith("card_precision_at_"))
        cols = ("roc_auc", "average_precision", k, "brier", "ece")
        names = ("model", "logistic_regression", "rules")
        rows = report["rows"]
        lines.append(
            "rows (fraud): "
            + ", ".join(f"{n} {r['rows']:,} ({r['fraud']:,})" for n, r in rows.items())
        )
    else:
        cols = ("recall_at_10", "recall_at_50", "ndcg_at_10")
        names = ("model", "popularity", "recent_category")
    lines.append(f"{'test':<20}" + "".join(f"{c:>22}" for c in cols))
    for name in names:
        values = test[name]
        lines.append(
            f"{name:<20}"
            + "".join(f"{values[c]:>22.4f}" if c in values else f"{'-':>22}" for c in cols)
        )
    if report["kind"] == "fraud":
        cal = report["calibration"]["model"]
        lines.append(
            f"calibration (validation): Brier {cal['validation_brier_before']:.5f} -> "
            f"{cal['validation_brier_after']:.5f}, ECE {cal['validation_ece_before']:.5f} -> "
            f"{cal['validation_ece_after']:.5f}"
        )
        lines.append(
            f"card precision@k upper bound (oracle): {report['oracle_card_precision']:.4f}"
        )
        verdict = "beats" if report["beats_baselines_on_ap"] else "DOES NOT beat"
        lines.append(f"the model {verdict} both baselines on average precision")
    else:
        ratio = report["recall_at_10_vs_popularity"]
        verdict = "meets" if ratio >= 2.0 else "DOES NOT meet"
        lines.append(f"Recall@10 is {ratio:.2f}x popularity's ({verdict} the 2x bar)")
    timings = ", ".join(f"{k} {v:.2f}" for k, v in report["timings"].items())
    lines.append(f"timings: {timings}")
    return "\n".join(lines)


def list_command(settings: Settings, args: argparse.Namespace) -> int:
    from models.artifacts import format_table, list_models

    directory = models_dir(settings, args)
    found = list_models(directory, args.kind)
    if not found:
        print(f"no models under {directory}")
        return 0
    print(format_table(found, LIST_METRICS))
    return 0

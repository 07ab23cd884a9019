"""The `rtml` command: parse, load settings, call library code, print one line on failure.

Each package that offers commands has a ``cli`` module with ``register(subparsers)``, which adds
its subcommand with ``set_defaults(run=handler)``; a handler takes ``(settings, args)`` and returns
an exit code. Expected failures are ``RtmlError``s: one red line on stderr, exit 1 (2 for bad
arguments, as argparse does).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rtml.errors import ConfigError, RtmlError
from rtml.settings import Settings, load_settings

Handler = Callable[[Settings, argparse.Namespace], int]

log = logging.getLogger("rtml")


def _command_modules() -> list[Any]:
    # Imported lazily so `rtml --help` stays fast and one broken extra cannot hide the others.
    import bench.cli
    import cases.cli
    import consumers.cli
    import features.cli
    import infra.cli
    import monitoring.cli
    import producers.cli
    import rtml.demo
    import serving.cli
    import training.cli

    return [
        infra.cli,
        producers.cli,
        consumers.cli,
        features.cli,
        training.cli,
        serving.cli,
        monitoring.cli,
        cases.cli,
        bench.cli,
        rtml.demo,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtml",
        description="Real-time ML on Kafka streams: features, online store, Ray Serve inference.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (default: $RTML_CONFIG, else ./rtml.toml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        module.register(subparsers)
    return parser


def run_async(coro: Any) -> Any:
    """Run a coroutine as a command's body; Ctrl-C ends it quietly."""
    return asyncio.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.config:
            import os

            os.environ["RTML_CONFIG"] = args.config
        settings = load_settings()
        logging.basicConfig(
            level="DEBUG" if args.verbose else settings.rtml_log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        handler: Handler = args.run
        return handler(settings, args)
    except ConfigError as exc:
        _fail(str(exc))
        return 2
    except RtmlError as exc:
        _fail(str(exc))
        return 1
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130


def _fail(message: str) -> None:
    red, reset = ("\033[31m", "\033[0m") if sys.stderr.isatty() else ("", "")
    print(f"{red}rtml: error: {message}{reset}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

"""``rtml cases serve``: the analysts' case page, the alert intake and the label relay.

rtml cases serve [--host H] [--port P]    (defaults: rtml_cases_host, rtml_cases_port)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from rtml.arguments import positive_int
from rtml.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cases",
        help="the analysts' fraud case page (PostgreSQL; see docs/database.md)",
        description="Fraud alerts become cases; analysts decide them; decisions become labels.",
    )
    commands = parser.add_subparsers(dest="cases_command", metavar="ACTION", required=True)
    serve = commands.add_parser("serve", help="serve the case page, open cases from alerts")
    serve.add_argument("--host", default=None, help="listen address (default: rtml_cases_host)")
    serve.add_argument("--port", type=positive_int, default=None, help="default: rtml_cases_port")
    serve.set_defaults(run=serve_command)


def serve_command(settings: Settings, args: argparse.Namespace) -> int:
    from cases.service import CaseService

    async def run() -> None:
        async with CaseService(settings, host=args.host, port=args.port) as service:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, service.stop)
            print(f"cases: http://{service.host}:{service.port}/")
            await service.serve()

    asyncio.run(run())
    return 0

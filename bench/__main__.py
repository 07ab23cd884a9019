"""``python -m bench [options]``: the same as ``rtml bench [options]``, also where the ``rtml``
command does not list ``bench`` yet."""

from __future__ import annotations

import sys
from typing import Any

from rtml import cli


def main() -> int:
    import bench.cli

    listed = cli._command_modules

    def with_bench() -> list[Any]:
        return [*(m for m in listed() if m is not bench.cli), bench.cli]

    cli._command_modules = with_bench
    return cli.main(["bench", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())

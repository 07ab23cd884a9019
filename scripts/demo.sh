#!/usr/bin/env bash
# The main job: `make demo` runs this after setup. Arguments: seconds of traffic, records/s.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/rtml demo --duration "${1:-60}" --rate "${2:-2000}"

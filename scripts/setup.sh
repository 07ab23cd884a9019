#!/usr/bin/env bash
# Installs what rtml needs on a fresh machine, idempotently: system packages (Java 17, Maven,
# redis-server; PostgreSQL for the database loop; chromium and its driver for the case page's
# browser test) when missing, and the Python virtual environment with rtml and its dev tools.
# Kafka's jars are fetched by `rtml infra up` itself (cached under ~/.cache/rtml).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${RTML_VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # the TLS tests' certificates
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]} with apt-get"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Debian starts a system redis on 6379 after install; rtml runs its own, so stop that one.
  if [[ " ${need_apt[*]} " == *" redis-server "* ]]; then
    ($SUDO systemctl disable --now redis-server >/dev/null 2>&1 || $SUDO service redis-server stop >/dev/null 2>&1 || true)
  fi
  # Likewise Debian's cluster on 5432: rtml runs its own PostgreSQL when RTML_CDC=true.
  if [[ " ${need_apt[*]} " == *" postgresql "* ]]; then
    ($SUDO systemctl disable --now postgresql >/dev/null 2>&1 || $SUDO service postgresql stop >/dev/null 2>&1 || true)
  fi
fi

# Optional: promtool (Debian package prometheus) lets the tests check the Prometheus alert rules
# (monitoring/prometheus/); without it those tests skip. Its server is not used: stop it.
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing promtool (apt-get package prometheus, optional)"
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
    ($SUDO systemctl disable --now prometheus >/dev/null 2>&1 || $SUDO service prometheus stop >/dev/null 2>&1 || true)
  else
    echo "setup: promtool not installed; the rules tests that need it skip"
  fi
fi

java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
  echo "setup: Java 17 or newer is required (found: ${java_major:-none})" >&2
  exit 1
fi

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' || {
  echo "setup: Python 3.11+ is required ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
}

stamp="$VENV/.rtml-installed"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python dependencies into $VENV (torch and ray are large; first time takes minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
echo "setup: ok ($("$VENV/bin/python" --version), java $java_major, $(redis-server --version | cut -d' ' -f3))"

"""Jars from Maven Central for the JVM services (the broker, Kafka Connect and its plugins).

Each set of jars is described by a pom shipped in ``infra/`` and copied once by ``mvn
dependency:copy-dependencies`` into a cache folder; a marker file holding the pom's hash says
the copy is complete, so later starts download nothing and a changed pom downloads again.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from infra import processes
from rtml.errors import ServiceError, ServiceUnavailable

log = logging.getLogger(__name__)

MARKER = ".complete"


def pom_text(name: str) -> str:
    return resources.files("infra").joinpath(name).read_text(encoding="utf-8")


def fingerprint(pom: str) -> str:
    return hashlib.sha256(pom.encode("utf-8")).hexdigest()


def jars_ready(libs: Path, pom: str) -> bool:
    try:
        return (libs / MARKER).read_text(encoding="utf-8").strip() == fingerprint(pom)
    except FileNotFoundError:
        return False


def ensure_jars(pom: str, libs: Path, *, expect: str, what: str, timeout_s: float = 900.0) -> Path:
    """The runtime jars of the pom text ``pom`` in ``libs``, downloaded on the first call.

    ``expect`` is the file name of one jar that must be there afterwards (a sanity check that
    Maven resolved what we asked for); ``what`` names the jars in messages ("the Kafka jars").
    """
    if jars_ready(libs, pom):
        return libs
    work = libs.parent
    with processes.file_lock(work / ".lock"):
        if jars_ready(libs, pom):  # another process finished while we waited for the lock
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError(
                "maven",
                f"mvn is not on PATH; it downloads {what} once (e.g. apt-get install -y maven)",
            )
        (work / "pom.xml").write_text(pom, encoding="utf-8")
        partial = work / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        log.info("downloading %s with Maven into %s (once)", what, libs)
        started = time.monotonic()
        command = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
        ]
        try:
            result = subprocess.run(
                command, cwd=work, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceUnavailable(
                "maven", f"downloading {what} took over {timeout_s:.0f} s"
            ) from exc
        if result.returncode != 0 or not (partial / expect).is_file():
            raise ServiceUnavailable(
                "maven",
                f"could not download {what} from Maven Central: "
                + maven_error(result.stdout + result.stderr),
            )
        shutil.rmtree(libs, ignore_errors=True)
        libs.parent.mkdir(parents=True, exist_ok=True)
        partial.rename(libs)
        (libs / MARKER).write_text(fingerprint(pom) + "\n", encoding="utf-8")
        jars = sum(1 for _ in libs.glob("*.jar"))
        log.info("%d jars ready in %.1f s", jars, time.monotonic() - started)
    return libs


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def maven_error(output: str) -> str:
    """The first ``[ERROR]`` line of Maven's output, without colours and help links."""
    lines = [_ANSI.sub("", line).strip() for line in output.splitlines()]
    errors = [line for line in lines if line.startswith("[ERROR]") and line != "[ERROR]"]
    text = errors[0] if errors else ([line for line in lines if line] or ["mvn failed"])[-1]
    text = text.removeprefix("[ERROR]").strip()
    return re.sub(r"\s*-> \[Help \d+\]$", "", text)[:400]

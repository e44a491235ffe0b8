"""Apache Kafka's jars and the Java that runs them: found, checked, resolved once with Maven.

The broker's jars come from this package's ``kafka/pom.xml`` (no jar is committed):
``mvn dependency:copy-dependencies`` copies them into ``home/kafka/lib`` once, with a
marker file, ``lib/.resolved``, naming the pom's digest, so that a changed pom resolves
again and an unchanged one never asks Maven twice. Maven's own output goes to
``home/kafka/maven.log``; each jar it downloads is reported as progress.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from protocolo.devstack.state import DevStackError, Log, StackPaths, log_tail

#: Java major version that Apache Kafka 4 brokers require.
MIN_JAVA = 17
#: Resolving the jars the first time (about 60 MB).
RESOLVE_TIMEOUT_S = 900.0
_MARKER = ".resolved"
_DOWNLOADED = re.compile(r"Downloaded from \S+: \S+/([^/\s]+\.(?:jar|pom))")


def pom_text() -> str:
    return resources.files("protocolo.devstack").joinpath("kafka/pom.xml").read_text()


def kafka_version() -> str:
    """The Apache Kafka version the shipped pom.xml names."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom_text())
    assert found is not None, "kafka/pom.xml names no <kafka.version>"
    return found.group(1).strip()


def lib_dir(paths: StackPaths) -> Path:
    return paths.kafka_dir / "lib"


# --------------------------------------------------------------------------- java


def java_executable() -> str | None:
    """``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else ``java`` on the PATH."""
    home = os.environ.get("JAVA_HOME", "").strip()
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.is_file() else None
    return shutil.which("java")


@functools.cache
def java_major(java: str) -> int | None:
    """The major version ``java -version`` reports (8 for "1.8.0_x"), None if unreadable."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


# --------------------------------------------------------------------------- maven


def _pom_digest() -> str:
    return hashlib.sha256(pom_text().encode()).hexdigest()


def jars_resolved(paths: StackPaths) -> bool:
    try:
        return (lib_dir(paths) / _MARKER).read_text().split()[1] == _pom_digest()
    except (OSError, IndexError):
        return False


def resolve_jars(paths: StackPaths, log: Log) -> None:
    """Copy the broker's jars into ``kafka/lib`` with Maven, unless done for this pom."""
    if jars_resolved(paths):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevStackError("kafka: Maven (mvn) is needed once to fetch Apache Kafka's jars")
    paths.kafka_dir.mkdir(parents=True, exist_ok=True)
    pom = paths.kafka_dir / "pom.xml"
    pom.write_text(pom_text())
    staging = paths.kafka_dir / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    maven_log = paths.kafka_dir / "maven.log"
    log(f"kafka: fetching Apache Kafka {kafka_version()}'s jars with Maven, once "
        f"(about 60 MB; output in {maven_log})")
    argv = [mvn, "-B", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
    downloaded = 0
    started = time.monotonic()
    with open(maven_log, "w") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=paths.kafka_dir)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            found = _DOWNLOADED.search(line)
            if found is not None and found.group(1).endswith(".jar"):
                downloaded += 1
                log(f"kafka:   downloaded {found.group(1)} ({downloaded} jars, "
                    f"{time.monotonic() - started:.0f} s)")
            if time.monotonic() - started > RESOLVE_TIMEOUT_S:
                proc.kill()
        code = proc.wait()
    if code != 0:
        raise DevStackError(
            f"kafka: Maven could not resolve Apache Kafka's jars (exit {code})\n"
            + log_tail(maven_log)
        )
    (staging / _MARKER).write_text(f"kafka_2.13-{kafka_version()} {_pom_digest()}\n")
    target = lib_dir(paths)
    if target.is_symlink() or target.is_file():
        target.unlink()
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    jars = len(list(target.glob("*.jar")))
    log(f"kafka: {jars} jars ready in {target} ({time.monotonic() - started:.0f} s)")

"""Building and running the Java interop project (tests/interop/java) with Maven.

Java 17 and Maven are part of the project's toolchain: a missing ``java`` or
``mvn`` fails these tests, it never skips them. The first build resolves the pinned
artifacts into ``~/.m2``; every later build runs offline (``-o``) and takes seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).parent / "java"
REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas" / "avro"
VECTORS = REPO / "schemas" / "vectors"
_BUILD = ["compile", "dependency:build-classpath", "-Dmdep.outputFile=target/classpath.txt"]


@dataclass(frozen=True)
class JavaInterop:
    """The compiled classes and their dependency classpath, ready to ``run``."""

    classpath: str

    def run(self, main_class: str, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["java", "-cp", self.classpath, f"protocolo.interop.{main_class}", *args],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )


def _mvn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mvn", "-q", "-B", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=900, check=False)


class JavaBuildFailed(RuntimeError):
    pass


def build() -> JavaInterop:
    """Compile the project once (offline if ~/.m2 has everything) and return its classpath."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise JavaBuildFailed(f"{tool} is not on PATH: the Java interop tests need Java 17 and Maven")
    built = _mvn("-o", *_BUILD)
    if built.returncode != 0:  # first run on this machine: resolve from Maven Central once
        built = _mvn(*_BUILD)
    if built.returncode != 0:
        raise JavaBuildFailed(f"mvn could not build {PROJECT}:\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}")
    dependencies = (PROJECT / "target" / "classpath.txt").read_text().strip()
    return JavaInterop(os.pathsep.join([str(PROJECT / "target" / "classes"), dependencies]))

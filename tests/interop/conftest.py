"""Fixture ``java_interop`` (session): the Java interop project, built once per session."""

from __future__ import annotations

import pytest
from java_build import JavaBuildFailed, JavaInterop, build


@pytest.fixture(scope="session")
def java_interop() -> JavaInterop:
    try:
        return build()
    except JavaBuildFailed as exc:  # a toolchain that cannot build is a failure, never a skip
        pytest.fail(str(exc))

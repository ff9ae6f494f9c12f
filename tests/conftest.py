"""Shared test helpers.

``need(condition, reason)``: skip a test whose real-world prerequisite (chromium, Go, the
built site, Linux) is missing -- but FAIL instead when CI=true, where every prerequisite
must be present (the CI machine installs them all: .ci/run).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SITE = ROOT / "_build" / "html"
ARTIFACTS = Path(__file__).resolve().parent / ".artifacts"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip (or, with CI=true, fail) unless ``condition`` holds."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def built_site() -> Path:
    """The site built by scripts/build-site (the test command builds it first)."""
    index = SITE / "index.html"
    if not index.exists():
        pytest.fail(f"{index} is missing: build the site first with scripts/build-site "
                    f"(scripts/run-tests does this)", pytrace=False)
    return SITE


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

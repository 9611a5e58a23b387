"""The lock files agree with pyproject.toml: every declared dependency is pinned, with hashes, at a version
its range accepts. A dependency added or a range changed without `make lock` fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")


def pins(lock: str) -> dict[str, list[str]]:
    """name -> pinned versions (a universal lock may pin one name twice, under exclusive markers)."""
    text = (ROOT / lock).read_text()
    out: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        found = PIN.match(block)
        if found:
            assert "--hash=sha256:" in block, f"{lock}: {found.group(1)} has no hash"
            out.setdefault(canonicalize_name(found.group(1)), []).append(found.group(2))
    return out


@pytest.mark.parametrize(
    ("lock", "declared"),
    [
        ("requirements.lock", PYPROJECT["project"]["dependencies"]),
        (
            "requirements-dev.lock",
            PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["dev"],
        ),
    ],
)
def test_every_declared_dependency_is_pinned_in_range(lock: str, declared: list[str]) -> None:
    pinned = pins(lock)
    for line in declared:
        req = Requirement(line)
        versions = pinned.get(canonicalize_name(req.name), [])
        assert versions, f"{lock} does not pin {req.name}: run `make lock`"
        assert any(req.specifier.contains(v, prereleases=True) for v in versions), (
            f"{lock} pins {req.name} {versions}, outside {req.specifier}: run `make lock`"
        )


def test_the_dev_lock_carries_the_build_backend() -> None:
    # `make run` and `make test` install the project with --no-build-isolation, from the lock's setuptools.
    [backend] = PYPROJECT["build-system"]["requires"]
    req = Requirement(backend)
    assert any(req.specifier.contains(v) for v in pins("requirements-dev.lock")["setuptools"])


def test_pre_1_0_dependencies_have_an_upper_bound() -> None:
    for line in PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["dev"]:
        req = Requirement(line)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        if lower and lower[0].startswith("0."):
            assert any(s.operator == "<" for s in req.specifier), f"{req.name} is pre-1.0 and has no upper bound"

"""ARCHITECTURE.md stays true to the tree: every path it names exists, it
covers every core part and every subpackage, and the README links it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import resil
from resil import _resil

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "ARCHITECTURE.md"
TOP = ("csrc", "resil", "tests", "benchmarks")


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _paths(text: str) -> set[str]:
    """Repository paths in ``text``: words under a top-level directory, less
    placeholders such as ``rs_<part>.h`` and trailing punctuation."""
    found = re.findall(r"(?<![\w/.])((?:%s)/[\w./<>-]*)" % "|".join(TOP), text)
    return {p.rstrip(".,;:)") for p in found if "<" not in p}


def test_paths_are_found_in_a_sample() -> None:
    sample = ("see `csrc/py/module.c`, tests/test_c_core.py greps; `tests/model/<part>.py`"
              " and resil/cli/ (the demo).")
    assert _paths(sample) == {"csrc/py/module.c", "tests/test_c_core.py", "resil/cli/"}


def test_every_path_the_architecture_document_names_exists() -> None:
    paths = _paths(_doc())
    assert len(paths) >= 25, sorted(paths)
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"


def test_the_document_covers_every_core_part_and_subpackage() -> None:
    text = _doc()
    parts = sorted(p.stem for p in (REPO / "csrc" / "core").glob("rs_*.h"))
    assert parts
    missing = [part for part in parts if f"`{part}`" not in text and part != "rs_common"]
    assert not missing, f"core parts ARCHITECTURE.md does not describe: {missing}"
    assert "csrc/core/rs_common.h" in text
    packages = sorted(p.parent.name for p in (REPO / "resil").glob("*/__init__.py"))
    assert packages
    missing = [pkg for pkg in packages if f"resil/{pkg}/" not in text]
    assert not missing, f"subpackages ARCHITECTURE.md does not describe: {missing}"


@pytest.mark.parametrize("type_name, method", [("Breaker", "_set_listener"),
                                               ("Ring", "_set_waiters")])
def test_the_boundary_callbacks_it_names_exist(type_name: str, method: str) -> None:
    assert f"`{method}`" in _doc()
    assert callable(getattr(getattr(_resil, type_name), method))


def test_the_conventions_it_names_exist() -> None:
    text = _doc()
    assert "`CANCELLATION`" in text and "`cancel_types`" in text
    assert resil.errors.CANCELLATION
    assert "cancel_types" in (REPO / "csrc" / "py" / "resil_py.h").read_text()
    assert "`SANITIZED_TESTS`" in text
    assert "SANITIZED_TESTS" in (REPO / "tests" / "test_sanitized.py").read_text()
    for code in re.findall(r"`(RS_[A-Z_]+)`", text):
        assert code in (REPO / "csrc" / "core" / "rs_common.h").read_text(), code


def test_readme_links_it_and_the_sdist_manifest_includes_it() -> None:
    assert "](ARCHITECTURE.md)" in (REPO / "README.md").read_text(encoding="utf-8")
    includes = [line.split()[1:] for line in (REPO / "MANIFEST.in").read_text().splitlines()
                if line.startswith("include ")]
    assert any("ARCHITECTURE.md" in names for names in includes)


def test_it_stays_short() -> None:
    assert 120 <= len(_doc().splitlines()) <= 200

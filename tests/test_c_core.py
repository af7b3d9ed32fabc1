"""C unit tests of the pure-C core (csrc/core), built and run under ASan + UBSan.

Each tests/c/test_*.c is compiled together with csrc/core/*.c into a
standalone binary in a temporary directory and run with LeakSanitizer on.
A missing gcc is a failure, not a skip: these tests are the only place the
core runs under the sanitizers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "csrc" / "core"
C_TESTS = ROOT / "tests" / "c"
TEST_SOURCES = sorted(C_TESTS.glob("test_*.c"))

CFLAGS = [
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-g",
    "-O1",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    f"-I{CORE}",
]
LIBS = ["-lm"]  # sqrt and friends live in libm; must follow the objects

SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")


def _compiler() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not found on PATH: the C core tests cannot run")
    return gcc


def _sanitizer_env() -> dict[str, str]:
    env = dict(os.environ)
    # The binary is standalone (no Python, no preloading), so LeakSanitizer works.
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:halt_on_error=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env.pop("LD_PRELOAD", None)
    return env


def test_c_test_sources_exist() -> None:
    """The parametrised test below must not silently run on zero files."""
    names = {p.name for p in TEST_SOURCES}
    assert {"test_ewma.c", "test_window.c", "test_breaker.c"} <= names
    assert sorted(CORE.glob("*.c")), "no C sources in csrc/core"


@pytest.mark.parametrize("source", TEST_SOURCES, ids=[p.stem for p in TEST_SOURCES])
def test_c_unit(source: Path, tmp_path: Path) -> None:
    """Compile one C test with the core under ASan/UBSan, run it, expect 0 failed."""
    binary = tmp_path / source.stem
    cmd = [_compiler(), *CFLAGS, str(source), *map(str, sorted(CORE.glob("*.c"))),
           "-o", str(binary), *LIBS]
    build = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert build.returncode == 0, f"compile failed:\n{' '.join(cmd)}\n{build.stderr}"

    run = subprocess.run([str(binary)], capture_output=True, text=True, cwd=tmp_path,
                         env=_sanitizer_env(), timeout=300)
    report = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    lines = run.stdout.strip().splitlines()
    assert lines, f"no output\n{report}"
    match = SUMMARY.match(lines[-1])
    assert match, f"last line is not 'N passed, M failed'\n{report}"
    assert int(match.group(2)) == 0, f"C checks failed\n{report}"
    assert int(match.group(1)) > 0, f"no checks ran\n{report}"
    assert run.returncode == 0, f"exit code {run.returncode}\n{report}"


def test_core_never_includes_python_h() -> None:
    """csrc/core is pure C11: no file may include Python.h (ARCHITECTURE.md)."""
    include = re.compile(r'^\s*#\s*include\s*[<"]\s*Python\.h\s*[>"]', re.MULTILINE)
    files = sorted(p for p in CORE.rglob("*") if p.suffix in {".c", ".h"})
    assert files, "csrc/core holds no C files"
    offenders = [str(p.relative_to(ROOT)) for p in files
                 if include.search(p.read_text(encoding="utf-8", errors="replace"))]
    assert not offenders, f"Python.h included in the core: {offenders}"

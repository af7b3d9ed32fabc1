"""`pip install .` from a clean copy, with build isolation, gives a working,
typed package (the extension, py.typed and the stubs)."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from tests_support import clean_copy

def test_wheel_builds_in_isolation_installs_and_works(tmp_path: Path) -> None:
    src = clean_copy(tmp_path / "src")
    assert not list(src.glob("resil/*.so"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "--wheel-dir", str(dist), str(src)],
                   check=True, timeout=600)
    wheel = next(dist.glob("resil-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("resil/_resil.") and n.endswith(".so") for n in names)
    for needed in ("resil/py.typed", "resil/_resil.pyi", "resil/__init__.py", "resil/__main__.py"):
        assert needed in names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", str(wheel)], check=True, timeout=300)
    snippet = (
        "import resil, pathlib\n"
        "assert 'site-packages' in resil.__file__\n"
        "b = resil.CircuitBreaker('pkg', failure_threshold=1)\n"
        "assert b.call(lambda: 2) == 2\n"
        "print(b.stats()['successes'])\n"
    )
    out = subprocess.run([str(py), "-c", snippet], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "1"
    demo = subprocess.run([str(py), "-m", "resil", "demo", "--every", "100"], cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    assert "rejected by the breaker" in demo.stdout


def test_sdist_carries_what_building_and_testing_need(tmp_path: Path) -> None:
    import tarfile

    src = clean_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(dist)], cwd=src,
                   check=True, timeout=600, capture_output=True)
    (archive,) = dist.glob("resil-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    repo = Path(__file__).resolve().parent.parent
    needed = {"LICENSE", "README.md", "ARCHITECTURE.md", "Makefile", "setup.py",
              "pyproject.toml", ".ci/run", "resil/py.typed", "resil/_resil.pyi"}
    for pattern in ("csrc/core/*.[ch]", "csrc/py/*.[ch]", "tests/*.py", "tests/c/*.c",
                    "tests/model/*.py", "benchmarks/*.py", "docs/*.py", "docs/**/*.rst"):
        needed |= {str(p.relative_to(repo)) for p in repo.glob(pattern)}
    assert needed <= names, sorted(needed - names)
    assert not [n for n in names if n.endswith((".so", ".pyc"))]

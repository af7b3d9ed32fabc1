"""The reference in docs/ builds with warnings as errors, resolves every
cross-reference, and documents every public name of resil."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest

import resil
from resil import __main__ as cli

pytest.importorskip("sphinx", reason="the reference needs the docs extra: pip install -e '.[docs]'")

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def _sphinx(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``make docs``'s build of ``source`` into ``out``."""
    return subprocess.run([sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q",
                           "-b", "html", str(source), str(out)],
                          capture_output=True, text=True, timeout=240, cwd=REPO)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("html")
    return out, _sphinx(DOCS, out)


def inventory(html: Path) -> set[str]:
    """The Python objects the built reference documents, from its
    objects.inv (four comment lines, then zlib-compressed lines
    ``name domain:role priority uri display``)."""
    data = (html / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = data.index(b"\n", header_end) + 1
    names = set()
    for line in zlib.decompress(data[header_end:]).decode("utf-8").splitlines():
        match = re.match(r"(\S+)\s+py:\w+\s", line)
        if match:
            names.add(match.group(1))
    return names


def public_names() -> list[str]:
    """Every name a user is told to import, read from the package as it is
    now: ``resil.X`` for each X in ``resil.__all__``, and for each public
    module among them or reachable lazily (``resil.prometheus``) the names
    of its own ``__all__``."""
    names = [f"resil.{name}" for name in resil.__all__]
    modules = [name for name in resil.__all__ if isinstance(getattr(resil, name), ModuleType)]
    modules += sorted(getattr(resil, "_LAZY_SUBMODULES", ()))
    for module_name in modules:
        module = getattr(resil, module_name)
        names.append(f"resil.{module_name}")
        names += [f"resil.{module_name}.{name}" for name in getattr(module, "__all__", ())]
    return sorted(set(names))


def undocumented(names: list[str], documented: set[str]) -> list[str]:
    """The names of ``names`` the reference lacks. A module's name is also
    documented by the flat name of the same object (``resil.sinks.FanoutError``
    is ``resil.FanoutError``)."""
    missing = []
    for name in names:
        if name in documented:
            continue
        short = name.rpartition(".")[2]
        module = sys.modules.get(name.rpartition(".")[0])
        flat = getattr(resil, short, None)
        if (module is not None and flat is not None and getattr(module, short, None) is flat
                and f"resil.{short}" in documented):
            continue
        missing.append(name)
    return missing


def undocumented_members(documented: set[str]) -> list[str]:
    """``resil.Class.member`` for each public member of a public class that
    the reference lacks: what the class defines or inherits from a resil
    class (a C engine type included: ``BoundedQueue`` gets ``put_nowait``
    from one), unless it overrides a standard-library base's member
    (``VirtualEventLoop.time``). A member documented on a public base class
    counts for its subclasses."""
    missing = []
    for name in resil.__all__:
        cls = getattr(resil, name)
        if not isinstance(cls, type):
            continue
        ours = [b for b in cls.__mro__ if b.__module__.startswith("resil")]
        theirs = [b for b in cls.__mro__ if b not in ours]
        for member in sorted({m for b in ours for m in vars(b) if not m.startswith("_")}):
            if any(hasattr(b, member) for b in theirs):
                continue
            owners = [name] + [b.__name__ for b in ours
                               if member in vars(b) and getattr(resil, b.__name__, None) is b]
            if not any(f"resil.{owner}.{member}" in documented for owner in owners):
                missing.append(f"resil.{name}.{member}")
    return missing


def test_the_reference_builds_without_a_warning(built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, result = built
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    pages = {p.relative_to(out).as_posix() for p in out.rglob("*.html")}
    sources = {p.relative_to(DOCS).with_suffix(".html").as_posix() for p in DOCS.rglob("*.rst")
               if "_build" not in p.parts}
    assert sources <= pages
    assert "search.html" in pages and (out / "searchindex.js").exists()


def test_every_public_name_is_in_the_reference(built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, result = built
    assert result.returncode == 0, result.stderr
    names = public_names()
    assert "resil.CircuitBreaker" in names and "resil.sinks.fanout" in names
    assert "resil.prometheus.exposition" in names
    missing = undocumented(names, inventory(out))
    assert not missing, (f"public names the reference does not document: {missing}; add each "
                         "to its capability's page in docs/api/ (.. autoclass:: resil.Name)")


def test_every_public_member_is_in_the_reference(built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, result = built
    assert result.returncode == 0, result.stderr
    documented = inventory(out)
    # Methods of the C engine types under the Python classes are documented.
    assert {"resil.BoundedQueue.put_nowait", "resil.CircuitBreaker.acquire"} <= documented
    missing = undocumented_members(documented)
    assert not missing, (f"public members the reference does not document: {missing}; give "
                         "their class :inherited-members: on its page in docs/api/")


def test_a_public_name_added_without_documentation_is_reported(
        built: tuple[Path, subprocess.CompletedProcess[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = built
    documented = inventory(out)
    assert undocumented(public_names(), documented) == []
    monkeypatch.setattr(resil, "Undocumented", type("Undocumented", (), {}), raising=False)
    monkeypatch.setattr(resil, "__all__", [*resil.__all__, "Undocumented"])
    assert undocumented(public_names(), documented) == ["resil.Undocumented"]
    assert undocumented_members(documented) == []
    monkeypatch.setattr(resil.CircuitBreaker, "undocumented", lambda self: None, raising=False)
    assert undocumented_members(documented) == ["resil.CircuitBreaker.undocumented"]


def test_the_c_types_render_with_their_signatures_and_docstrings(
        built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = built
    text = re.sub(r"<[^>]+>", "", (out / "api" / "retry.html").read_text(encoding="utf-8"))
    assert "Backoff(base=1.0, multiplier=2.0, *, max_delay=30.0, jitter='none', seed=None)" in \
        text.replace("&#39;", "'")
    assert resil.Backoff.__doc__ is not None
    first_line = resil.Backoff.__doc__.split("\n")[0]
    assert first_line.split(". ")[0] in text
    monitoring = re.sub(r"<[^>]+>", "", (out / "api" / "monitoring.html").read_text(encoding="utf-8"))
    assert "WindowedCounter(window, slots=10, *, clock=None)" in monitoring
    assert "Events counted in the window now." in monitoring


def test_the_command_line_page_shows_each_commands_help(
        built: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = built
    page = re.sub(r"<[^>]+>", "", (out / "cli.html").read_text(encoding="utf-8"))
    assert cli._COMMANDS
    for name, load in cli._COMMANDS.items():
        assert f"python -m resil {name}" in page
        for action in load().build_parser()._actions:
            for option in action.option_strings:
                assert option in page, (name, option)


def test_a_broken_reference_or_docstring_fails_the_build(tmp_path: Path) -> None:
    # One page with references to names that do not exist (a private one
    # too: only a private class that exists is shown as text) and a
    # docstring whose markup is broken (an unescaped *args): each warns,
    # and a warning fails the build.
    source = tmp_path / "docs"
    source.mkdir()
    shutil.copy(DOCS / "conf.py", source / "conf.py")
    with open(source / "conf.py", "a", encoding="utf-8") as conf:
        # conf.py puts the repository on sys.path; the page's module sits beside it.
        conf.write("\nsys.path.insert(0, str(Path(__file__).resolve().parent))\n")
    (source / "broken_docstring.py").write_text('def f():\n    """Calls fn(*args)."""\n',
                                                encoding="utf-8")
    (source / "index.rst").write_text(
        "Page\n====\n\n:class:`resil.NoSuchThing` is not a name, nor is\n"
        ":class:`resil.messaging.dlq._NoSuchSentinel`.\n\n"
        ".. autofunction:: broken_docstring.f\n", encoding="utf-8")
    result = _sphinx(source, tmp_path / "html")
    assert result.returncode != 0
    assert "py:class reference target not found: resil.NoSuchThing" in result.stderr
    assert "reference target not found: resil.messaging.dlq._NoSuchSentinel" in result.stderr
    assert "Inline emphasis start-string without end-string" in result.stderr


def test_make_test_builds_the_docs_with_warnings_as_errors() -> None:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    # Run from make test itself, so the outer make's flags are left out.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(["make", "-n", "--no-print-directory", "test"], capture_output=True,
                            text=True, timeout=60, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    builds = [line for line in result.stdout.splitlines() if "-m sphinx" in line]
    assert builds, result.stdout
    assert all(" -W " in line and " -E " in line for line in builds)


def test_the_readme_says_where_the_reference_is_and_how_to_build_it() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "`make docs`" in readme and "docs/_build/html" in readme
    assert "docs/_build/" in (REPO / ".gitignore").read_text().splitlines()


def test_the_readme_stays_a_short_tour_whose_links_exist() -> None:
    # The guides live in the reference; the README keeps the two commands,
    # one example and a map of the pages, each of which must exist.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert len(links) >= 14
    for link in links:
        assert (REPO / link).is_file(), link

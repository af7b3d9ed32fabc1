"""Sphinx configuration of resil's reference.

Built with warnings as errors (``make docs``: ``python -m sphinx -E -W``)
and every cross-reference checked (``nitpicky`` below), so a broken
docstring or a reference to a name that does not exist fails the build. The pages
document the public names at their flat path (``resil.CircuitBreaker``);
autodoc imports resil, so the C types render from their docstrings and
text signatures.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docutils import nodes  # noqa: E402
from docutils.parsers.rst import Directive  # noqa: E402

import resil  # noqa: E402  (after the path, so a checkout's in-place build is used)

project = "resil"
author = "resil contributors"
copyright = "resil contributors"
release = version = resil.__version__

extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build"]
nitpicky = True
# Single backquotes in a docstring (`seconds`) are code, not a reference.
default_role = "code"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = True
autodoc_default_options = {"members": True, "undoc-members": True}
autodoc_member_order = "bysource"
html_theme = "alabaster"
html_title = f"resil {release}"
html_theme_options = {"description": "Resilience for asyncio and threaded Python, with a C engine.",
                      "fixed_sidebar": True, "page_width": "1180px"}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}
html_show_sourcelink = False


def _flat(name: str) -> str | None:
    """``resil.policies.breaker.CircuitBreaker`` (where a name is defined)
    -> ``resil.CircuitBreaker`` (where the reference documents it)."""
    head, _, last = name.rpartition(".")
    if (head.startswith("resil.") and last in resil.__all__
            and _lookup(name) is getattr(resil, last)):
        return f"resil.{last}"
    return None


def _lookup(name: str) -> object:
    """The object ``name`` (``resil.messaging.queues.T``) names, or None."""
    module_name, _, attr = name.rpartition(".")
    module = sys.modules.get(module_name)
    return getattr(module, attr, None) if module is not None else None


def _missing_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolves a reference the Python domain did not find.

    Four kinds are resolved here, every other one stays a warning (an
    error, in the build): a public name written at the module that defines
    it (a type hint says ``resil.messaging.emitter.EventEmitter``; the page
    documents ``resil.EventEmitter``); a type variable of a generic
    signature (``T`` in ``BoundedQueue.get() -> T``) and a private class
    that exists (``_Unchanged``, the type of a "leave it as it is"
    default), which have no page and are shown as text; and a
    standard-library name (``asyncio.Task``), also shown as text: the build
    is offline, so there is no inventory of the Python documentation to
    link to.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    flat = _flat(target)
    if flat is not None:
        domain = env.get_domain("py")
        return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], flat,
                                   node, contnode)
    found = _lookup(target)
    if isinstance(found, TypeVar) or target.split(".")[0] in sys.stdlib_module_names:
        return contnode
    if isinstance(found, type) and target.rpartition(".")[2].startswith("_"):
        return contnode
    return None


def _text_block(text: str) -> nodes.literal_block:
    block = nodes.literal_block(text=text)
    block["language"] = "text"  # shown as printed, not highlighted as Python
    return block


class CommandHelp(Directive):
    """``.. resil-commands::``: the help text of ``python -m resil`` and of
    each of its commands, taken from their parsers when the pages are built,
    so the page cannot drift from the program."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from resil import __main__ as cli

        saved = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "79"  # argparse wraps to the terminal's width
        try:
            out: list[nodes.Node] = [_text_block(cli.usage())]
            for name, load in cli._COMMANDS.items():
                parser = load().build_parser()
                out.append(nodes.rubric(text=f"python -m resil {name}"))
                out.append(_text_block(parser.format_help().rstrip()))
        finally:
            if saved is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = saved
        return out


def _public_bases(app: Any, name: str, obj: Any, options: Any, bases: list[type]) -> None:
    """Shows the bases a reader can use, not private helpers
    (``OperationTimeout`` takes its constructor from ``resil.errors._Message``)."""
    bases[:] = [b for b in bases if not b.__name__.startswith("_")
                and not b.__module__.startswith("resil._")]


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _public_bases)
    app.add_directive("resil-commands", CommandHelp)
    app.connect("missing-reference", _missing_reference)

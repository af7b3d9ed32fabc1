"""``python -m resil analyze PATH... [--json]``: who publishes and who
subscribes to which event type, read from Python sources without running
them.

Every call ``<anything>.publish(type, ...)`` and ``<anything>.subscribe(type,
handler)`` is found (awaited or not; the type positional or as
``event_type=``, the handler positional or as ``handler=``). A call whose
type is a string literal is analysed; any other type (a variable, an
f-string) is listed under ``dynamic`` with its place, and takes no part in
the findings. A bare ``publish(...)`` (not a method call) is not looked at.

Findings:

- ``orphans``: a type that is published and that no subscription receives.
  A subscription pattern whose last segment is ``*`` receives, as on
  :class:`resil.EventBus`, every type that starts with what comes before the
  ``*`` (``"graph.*"`` receives ``graph.edge_added``; ``"*"`` receives all).
- ``unused_subscriptions``: a subscription (exact or pattern) that receives
  no published type.
- ``loops``: feedback loops. A subscription's handler is looked up among the
  functions and methods of the scanned sources (a name in the enclosing
  scopes, else a module-level function of that name in any file;
  ``self.name`` in the method's class and its bases; ``obj.name`` in every
  class and module that defines ``name``; a lambda; ``functools.partial(f,
  ...)``). The publish calls written in that function's own body (not in a
  function nested in it) give edges "type received -> type published"; each
  elementary cycle of that graph is one loop, reported once, starting at
  its smallest type, with the handler and publish call behind each step.

Places are ``file:line``, the file named relative to the common directory
of the paths given (a directory's own path, or a file's directory), with
``/`` separators, so the report - and its ``sha256``, taken over the
report's canonical JSON - is the same whatever the order of the paths or
where the sources sit on disk. Directories are searched recursively for
``*.py`` files, skipping those whose name starts with ``.`` and
``__pycache__``; a file named explicitly is read whatever its name.

Exit status of the command: 2 for a usage error (no path, or a path that
does not exist: nothing is analysed) or when a file could not be read or
parsed (it is listed under ``errors`` with the line of the syntax error,
the other files are analysed and the report is printed first); else 1 when
a loop or an orphan is found; else 0.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: At most this many loops are enumerated; past it ``loops_truncated`` is true.
MAX_LOOPS = 1000

#: A handler or type expression is shown with at most this many characters.
MAX_EXPRESSION = 80


@dataclass(eq=False)
class _Scope:
    """A module, class, function or lambda of a scanned file."""

    kind: str  # "module", "class" or "function"
    name: str
    qualname: str
    file: str
    line: int
    parent: _Scope | None
    first_param: str | None = None
    bases: list[str] = field(default_factory=list)
    # functions defined directly in this scope, by name
    functions: dict[str, list[_Scope]] = field(default_factory=dict)
    imports: dict[str, str] = field(default_factory=dict)  # alias -> imported name
    publishes: list[_Call] = field(default_factory=list)  # literal, in its own body


@dataclass(eq=False)
class _Call:
    kind: str  # "publish" or "subscribe"
    file: str
    line: int
    column: int
    event_type: str | None  # None: not a literal
    expression: str
    scope: _Scope
    handler: ast.expr | None = None


def _shown(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except RecursionError:
        return "<expression too deep to show>"
    text = " ".join(text.split())
    return text if len(text) <= MAX_EXPRESSION else text[:MAX_EXPRESSION - 3] + "..."


def _arg(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    """The ``index``-th positional argument, else the ``keyword`` argument.
    A starred argument at or before ``index`` is returned as is."""
    for i, arg in enumerate(call.args):
        if isinstance(arg, ast.Starred) or i == index:
            return arg
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    return None


def _location(scope: _Scope) -> str:
    """The qualified name of the function or class a call is in."""
    return scope.qualname or "<module>"


_SCOPES = frozenset({ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef})
_LEAVES = frozenset({ast.Name, ast.Constant, *ast.expr_context.__subclasses__(),
                     *ast.operator.__subclasses__(), *ast.unaryop.__subclasses__(),
                     *ast.cmpop.__subclasses__(), *ast.boolop.__subclasses__()})


class _File:
    """The scopes and the publish/subscribe calls of one parsed file."""

    def __init__(self, name: str, tree: ast.Module) -> None:
        self.name = name
        self.module = _Scope("module", "", "", name, 0, None)
        self.calls: list[_Call] = []
        self.lambdas: dict[int, _Scope] = {}  # id(ast.Lambda) -> its scope
        self.all_classes: list[_Scope] = []
        self._walk(tree)

    def _child(self, kind: str, name: str, node: ast.AST, parent: _Scope) -> _Scope:
        qualname = f"{parent.qualname}.{name}" if parent.qualname else name
        return _Scope(kind, name, qualname, self.name, getattr(node, "lineno", 0), parent)

    def _walk(self, tree: ast.Module) -> None:
        # Iterative, so a deeply nested expression cannot exhaust the stack;
        # names, constants and operators have nothing to look at below them.
        stack: list[tuple[ast.AST, _Scope]] = [(tree, self.module)]
        push = stack.append
        while stack:
            node, scope = stack.pop()
            kind = type(node)
            outer = scope
            if kind is ast.Call:
                self._call(node, scope)  # type: ignore[arg-type]
            elif kind in _SCOPES:
                scope = self._scope(node, scope)
            elif kind is ast.ImportFrom:
                for alias in node.names:  # type: ignore[attr-defined]
                    scope.imports[alias.asname or alias.name] = alias.name
                continue
            for name in node._fields:
                value = getattr(node, name, None)
                # A body runs in the new scope; decorators, defaults and
                # bases in the enclosing one.
                where = scope if name == "body" else outer
                if type(value) is list:
                    for item in value:
                        if isinstance(item, ast.AST) and type(item) not in _LEAVES:
                            push((item, where))
                elif isinstance(value, ast.AST) and type(value) not in _LEAVES:
                    push((value, where))

    def _scope(self, node: ast.AST, parent: _Scope) -> _Scope:
        """The scope ``node`` (a def, class or lambda) opens, recorded in
        ``parent`` and the file's tables."""
        if isinstance(node, ast.Lambda):
            inner = self._child("function", "<lambda>", node, parent)
            self.lambdas[id(node)] = inner
        elif isinstance(node, ast.ClassDef):
            inner = self._child("class", node.name, node, parent)
            inner.bases = [b.attr if isinstance(b, ast.Attribute) else b.id
                           for b in node.bases if isinstance(b, (ast.Name, ast.Attribute))]
            self.all_classes.append(inner)
        else:
            assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            inner = self._child("function", node.name, node, parent)
            positional = node.args.posonlyargs + node.args.args
            inner.first_param = positional[0].arg if positional else None
            parent.functions.setdefault(node.name, []).append(inner)
        return inner

    def _call(self, node: ast.Call, scope: _Scope) -> None:
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr in ("publish", "subscribe")):
            return
        type_arg = _arg(node, 0, "event_type")
        event_type = None
        if isinstance(type_arg, ast.Constant) and isinstance(type_arg.value, str):
            event_type = type_arg.value
        call = _Call(func.attr, self.name, node.lineno, node.col_offset, event_type,
                     "(no event type)" if type_arg is None else _shown(type_arg), scope)
        if func.attr == "subscribe" and event_type is not None:
            handler = _arg(node, 1, "handler")
            call.handler = None if isinstance(handler, ast.Starred) else handler
        elif func.attr == "publish" and event_type is not None and scope.kind == "function":
            scope.publishes.append(call)
        self.calls.append(call)


class _Index:
    """Every scanned file's functions and classes, to resolve handlers."""

    def __init__(self, files: list[_File]) -> None:
        self.module_functions: dict[str, list[_Scope]] = {}
        self.methods: dict[str, list[_Scope]] = {}
        self.classes: dict[str, list[_Scope]] = {}
        self.lambdas: dict[int, _Scope] = {}
        for f in files:
            self.lambdas.update(f.lambdas)
            for name, defs in f.module.functions.items():
                self.module_functions.setdefault(name, []).extend(defs)
            for cls in f.all_classes:
                self.classes.setdefault(cls.name, []).append(cls)
                for name, defs in cls.functions.items():
                    self.methods.setdefault(name, []).extend(defs)

    def resolve(self, call: _Call) -> list[_Scope]:
        """The functions ``call``'s handler may be, in a stable order."""
        found = self._resolve(call.handler, call.scope)
        unique = {id(s): s for s in found}
        return sorted(unique.values(), key=lambda s: (s.file, s.line, s.qualname))

    def _resolve(self, handler: ast.expr | None, scope: _Scope) -> list[_Scope]:
        if isinstance(handler, ast.Lambda):
            return [self.lambdas[id(handler)]]
        if isinstance(handler, ast.Name):
            return self._by_name(handler.id, scope)
        if isinstance(handler, ast.Attribute):
            base = handler.value
            if isinstance(base, ast.Name):
                cls = self._own_class(base.id, scope)
                if cls is not None:
                    found = self._method(cls, handler.attr)
                    if found:
                        return found
            return (self.methods.get(handler.attr, [])
                    + self.module_functions.get(handler.attr, []))
        if (isinstance(handler, ast.Call) and handler.args
                and _shown(handler.func).rsplit(".", 1)[-1] == "partial"):
            return self._resolve(handler.args[0], scope)
        return []

    def _by_name(self, name: str, scope: _Scope) -> list[_Scope]:
        s: _Scope | None = scope
        while s is not None:
            # A class body's names are not visible inside its methods.
            if (s.kind != "class" or s is scope) and name in s.functions:
                return s.functions[name]
            if s.parent is None and name in s.imports:
                # Imported: a function of that (original) name in another file.
                return [f for f in self.module_functions.get(s.imports[name], [])
                        if f.file != s.file]
            s = s.parent
        return self.module_functions.get(name, [])

    @staticmethod
    def _own_class(name: str, scope: _Scope) -> _Scope | None:
        """The class whose method ``scope`` is in, when ``name`` is that
        method's first parameter (``self``, ``cls``)."""
        s: _Scope | None = scope
        while s is not None and s.parent is not None:
            if s.kind == "function" and s.parent.kind == "class":
                return s.parent if s.first_param == name else None
            s = s.parent
        return None

    def _method(self, cls: _Scope, name: str) -> list[_Scope]:
        """``name`` in ``cls`` or, failing that, in its bases (found by name
        among the scanned classes), breadth first."""
        queue, seen = [cls], {id(cls)}
        while queue:
            c = queue.pop(0)
            if name in c.functions:
                return c.functions[name]
            for base in c.bases:
                for b in self.classes.get(base, []):
                    if id(b) not in seen:
                        seen.add(id(b))
                        queue.append(b)
        return []


def _matches(pattern: str, event_type: str) -> bool:
    """Whether a subscription to ``pattern`` receives ``event_type``."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def _is_pattern(pattern: str) -> bool:
    return pattern == "*" or pattern.endswith(".*")


def _at(file: str, line: int) -> str:
    return f"{file}:{line}"


def _place(at: str) -> tuple[str, int]:
    """A "file:line" place as a key that orders lines by number."""
    file, line = at.rsplit(":", 1)
    return file, int(line)


def _paths(paths: Any) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    try:
        items = list(paths)
    except TypeError:
        raise TypeError("paths must be a path (str or os.PathLike) or an iterable of paths, "
                        f"not {type(paths).__name__}") from None
    result = []
    for p in items:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"paths must hold str or os.PathLike paths, not {type(p).__name__}")
        text = os.fspath(p)
        if not isinstance(text, str):
            raise TypeError(f"paths must hold str paths, not {type(text).__name__}")
        if not os.path.exists(text):
            raise ValueError(f"paths: no such file or directory: {text!r}")
        if not (os.path.isfile(text) or os.path.isdir(text)):
            raise ValueError(f"paths: not a file or a directory: {text!r}")
        result.append(os.path.abspath(text))
    if not result:
        raise ValueError("paths must name at least one file or directory")
    return result


def _sources(roots: list[str], errors: list[dict[str, Any]]) -> dict[str, str]:
    """Report name -> absolute path of every file to read. A file reached
    twice (a directory and a file in it) is read once, under the smaller
    of its names."""
    bases = [r if os.path.isdir(r) else os.path.dirname(r) for r in roots]
    try:
        common: str | None = os.path.commonpath(bases)
    except ValueError:  # paths on different drives
        common = None

    def name(path: str) -> str:
        rel = path if common is None else os.path.relpath(path, common)
        return rel.replace(os.sep, "/")

    def walk_error(error: OSError) -> None:
        where = name(error.filename) if error.filename else "?"
        errors.append({"file": where, "line": None,
                       "message": f"cannot list: {error.strerror or type(error).__name__}"})

    found: dict[str, str] = {}  # real path -> name
    for root in roots:
        files: Iterable[str]
        if os.path.isdir(root):
            files = _walk(root, walk_error)
        else:
            files = [root]
        for path in files:
            real = os.path.realpath(path)
            n = name(path)
            if real not in found or n < found[real]:
                found[real] = n
    return {n: real for real, n in found.items()}


def _walk(root: str, onerror: Any) -> Iterator[str]:
    for top, dirs, files in os.walk(root, onerror=onerror):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(top, f)


def _parse(name: str, path: str, errors: list[dict[str, Any]]) -> _File | None:
    try:
        with open(path, "rb") as f:
            source = f.read()
        tree = ast.parse(source, filename=name)
    except SyntaxError as e:
        errors.append({"file": name, "line": e.lineno,
                       "message": f"{type(e).__name__}: {e.msg}"})
        return None
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, too deep
        detail = str(e).splitlines()[0] if str(e) else "nested too deeply"
        errors.append({"file": name, "line": None, "message": f"{type(e).__name__}: {detail}"})
        return None
    except OSError as e:
        errors.append({"file": name, "line": None,
                       "message": f"cannot read: {e.strerror or type(e).__name__}"})
        return None
    return _File(name, tree)


def _cycles(edges: dict[str, set[str]]) -> tuple[list[list[str]], bool]:
    """Every elementary cycle of the graph, each once, starting at its
    smallest node; at most MAX_LOOPS (then the flag is True)."""
    nodes = sorted(set(edges) | {b for bs in edges.values() for b in bs})
    order = {n: i for i, n in enumerate(nodes)}
    reverse: dict[str, set[str]] = {n: set() for n in nodes}
    for a, bs in edges.items():
        for b in bs:
            reverse[b].add(a)
    cycles: list[list[str]] = []
    for start in nodes:
        floor = order[start]
        # Nodes above start from which start can be reached: the only ones
        # worth entering.
        reach = {start}
        todo = [start]
        while todo:
            for a in reverse[todo.pop()]:
                if order[a] > floor and a not in reach:
                    reach.add(a)
                    todo.append(a)
        path = [start]
        on_path = {start}
        stack = [iter(sorted(edges.get(start, ())))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                on_path.discard(path.pop())
            elif nxt == start:
                cycles.append(list(path))
                if len(cycles) >= MAX_LOOPS:
                    return cycles, True
            elif nxt in reach and nxt not in on_path:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return cycles, False


def _loops(subs: list[_Call], resolved: dict[int, list[_Scope]], published: list[str],
           subscriber: Callable[[_Call], dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The feedback loops of the type graph, where a published type points
    to each type published in the body of a handler that receives it."""
    edges: dict[str, set[str]] = {}
    steps: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in subs:
        pattern = s.event_type or ""
        for fn in resolved[id(s)]:
            for p in fn.publishes:
                target = p.event_type or ""
                for t in published:
                    if _matches(pattern, t):
                        edges.setdefault(t, set()).add(target)
                        steps.setdefault((t, target), []).append({
                            "on": t, "handler": subscriber(s)["handler"],
                            "subscribed_at": _at(s.file, s.line), "function": fn.qualname,
                            "defined_at": _at(fn.file, fn.line), "publishes": target,
                            "published_at": _at(p.file, p.line)})
    for entries in steps.values():
        entries.sort(key=lambda e: [_place(e[k]) for k in ("subscribed_at", "defined_at",
                                                            "published_at")])
    cycles, truncated = _cycles(edges)
    loops = []
    for cycle in cycles:
        loop_steps = []
        for i, a in enumerate(cycle):
            loop_steps.extend(steps[(a, cycle[(i + 1) % len(cycle)])])
        loops.append({"types": cycle, "steps": loop_steps})
    return loops, truncated


def _components(calls: list[_Call]) -> int:
    """How many classes (the outermost, for nested ones), and modules
    outside any class, the calls are in."""
    components = set()
    for c in calls:
        outer = "<module>"
        scope: _Scope | None = c.scope
        while scope is not None:
            if scope.kind == "class":
                outer = scope.qualname
            scope = scope.parent
        components.add((c.file, outer))
    return len(components)


def analyze(paths: Any) -> dict[str, Any]:
    """Analyses the publish and subscribe calls in the Python sources under
    ``paths`` (a path, or an iterable of paths, of files or directories)
    without running them, and returns the report, a JSON-ready dict:

    - ``files``: the files read, by their report names;
    - ``counts``: files, event_types, publishers, subscribers, wildcards,
      components (classes, or modules outside classes, that publish or
      subscribe), orphans, unused_subscriptions, loops, dynamic, errors;
    - ``event_types``: type -> ``status`` ("ok", "orphaned": published and
      never received, "unused": subscribed and never published),
      ``publishers`` (``at`` "file:line", ``function``) and ``subscribers``
      (``at``, ``handler`` as written, ``pattern`` it subscribed with,
      ``function`` it subscribed in, ``defined_at``: the functions the
      handler was resolved to, each ``at`` and ``function``);
    - ``orphans``: the orphaned types; ``unused_subscriptions``: the
      subscriptions that receive no published type (``pattern``, ``at``,
      ``handler``); ``wildcards``: the pattern subscriptions with the
      published types each ``matches``;
    - ``loops``: each with ``types`` (the cycle, smallest first) and
      ``steps``: for each handler behind an edge, ``on`` (type received),
      ``handler``, ``subscribed_at``, ``function``, ``defined_at``,
      ``publishes`` and ``published_at``; ``loops_truncated`` when more
      than MAX_LOOPS exist;
    - ``dynamic``: calls whose type is not a string literal (``at``,
      ``call``, ``expression``, ``function``);
    - ``errors``: files that could not be read or parsed (``file``,
      ``line`` or None, ``message``);
    - ``sha256``: the hash of the canonical JSON of everything else.

    Every list is sorted, and names do not depend on the order of
    ``paths`` or on where the sources are. Raises TypeError for ``paths``
    of the wrong type and ValueError for none, or one that does not exist.
    """
    roots = _paths(paths)
    errors: list[dict[str, Any]] = []
    sources = _sources(roots, errors)
    files = [f for f in (_parse(n, sources[n], errors) for n in sorted(sources))
             if f is not None]
    index = _Index(files)
    calls = sorted((c for f in files for c in f.calls),
                   key=lambda c: (c.file, c.line, c.column))
    pubs = [c for c in calls if c.kind == "publish" and c.event_type is not None]
    subs = [c for c in calls if c.kind == "subscribe" and c.event_type is not None]
    published = sorted({c.event_type for c in pubs if c.event_type is not None})
    resolved = {id(s): index.resolve(s) for s in subs}

    def subscriber(s: _Call) -> dict[str, Any]:
        return {"at": _at(s.file, s.line),
                "handler": "(no handler)" if s.handler is None else _shown(s.handler),
                "pattern": s.event_type, "function": _location(s.scope),
                "defined_at": [{"at": _at(d.file, d.line), "function": d.qualname}
                               for d in resolved[id(s)]]}

    types = sorted(set(published) | {c.event_type for c in subs if c.event_type is not None
                                     and not _is_pattern(c.event_type)})
    event_types: dict[str, Any] = {}
    orphans = []
    for t in types:
        receivers = [s for s in subs if s.event_type is not None and _matches(s.event_type, t)]
        senders = [p for p in pubs if p.event_type == t]
        status = "ok"
        if not senders:
            status = "unused"
        elif not receivers:
            status = "orphaned"
            orphans.append(t)
        event_types[t] = {
            "status": status,
            "publishers": [{"at": _at(p.file, p.line), "function": _location(p.scope)}
                           for p in senders],
            "subscribers": [subscriber(s) for s in receivers],
        }
    unused = []
    wildcards = []
    for s in subs:
        pattern = s.event_type or ""
        received = [t for t in published if _matches(pattern, t)]
        entry = {"pattern": pattern, "at": _at(s.file, s.line),
                 "handler": subscriber(s)["handler"]}
        if not received:
            unused.append(entry)
        if _is_pattern(pattern):
            wildcards.append({**entry, "matches": received})

    loops, truncated = _loops(subs, resolved, published, subscriber)

    dynamic = [{"at": _at(c.file, c.line), "call": c.kind, "expression": c.expression,
                "function": _location(c.scope)} for c in calls if c.event_type is None]
    # A directory under two of the paths is listed twice: one entry per error.
    errors = [dict(e) for e in {(("file", e["file"]), ("line", e["line"]),
                                 ("message", e["message"])) for e in errors}]
    errors.sort(key=lambda e: (e["file"], e["line"] or 0, e["message"]))
    report: dict[str, Any] = {
        "files": sorted(sources),
        "counts": {"files": len(sources), "event_types": len(types),
                   "publishers": len(pubs), "subscribers": len(subs),
                   "wildcards": len(wildcards), "components": _components(pubs + subs),
                   "orphans": len(orphans), "unused_subscriptions": len(unused),
                   "loops": len(loops), "dynamic": len(dynamic), "errors": len(errors)},
        "event_types": event_types,
        "orphans": orphans,
        "unused_subscriptions": unused,
        "wildcards": wildcards,
        "loops": loops,
        "loops_truncated": truncated,
        "dynamic": dynamic,
        "errors": errors,
    }
    report["sha256"] = report_hash(report)
    return report


def report_hash(report: dict[str, Any]) -> str:
    """The sha256 (hex) of ``report``'s canonical JSON (sorted keys, no
    spaces, ASCII), its own ``sha256`` key left out."""
    body = {k: v for k, v in report.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def exit_status(report: dict[str, Any]) -> int:
    """The command's exit status for ``report``: 2 when a file could not be
    read or parsed, else 1 when it has a loop or an orphan, else 0."""
    if report["errors"]:
        return 2
    return 1 if report["loops"] or report["orphans"] else 0


def render(report: dict[str, Any]) -> str:
    """``report`` as the text ``python -m resil analyze`` prints."""
    n = report["counts"]
    lines = [f"{n['files']} files: {n['event_types']} event types, {n['publishers']} publish "
             f"calls, {n['subscribers']} subscriptions ({n['wildcards']} wildcard), "
             f"{n['components']} components, {n['dynamic']} dynamic"]

    def section(title: str, items: list[str]) -> None:
        if items:
            lines.append("")
            lines.append(title)
            lines.extend(items)

    items = []
    for t, info in report["event_types"].items():
        items.append(f"  {t}: {info['status']} ({len(info['publishers'])} published, "
                     f"{len(info['subscribers'])} subscribed)")
        for p in info["publishers"]:
            items.append(f"    published at {p['at']} in {p['function']}")
        for s in info["subscribers"]:
            via = "" if s["pattern"] == t else f" via {s['pattern']!r}"
            items.append(f"    subscribed at {s['at']}: {s['handler']}{via}")
    section("event types:", items)
    published_at = {t: ", ".join(p["at"] for p in info["publishers"])
                    for t, info in report["event_types"].items()}
    section("orphaned types (published, never subscribed):",
            [f"  {t} (published at {published_at[t]})" for t in report["orphans"]])
    section("unused subscriptions (subscribed, never published):",
            [f"  {u['pattern']} at {u['at']}: {u['handler']}"
             for u in report["unused_subscriptions"]])
    section("wildcard subscriptions:",
            [f"  {w['pattern']} at {w['at']}: {w['handler']} receives "
             f"{', '.join(w['matches']) or 'nothing published'}" for w in report["wildcards"]])
    items = []
    for loop in report["loops"]:
        items.append("  " + " -> ".join(loop["types"] + loop["types"][:1]))
        for s in loop["steps"]:
            items.append(f"    {s['on']} -> {s['publishes']}: {s['handler']} "
                         f"(subscribed at {s['subscribed_at']})")
            items.append(f"      {s['function']} ({s['defined_at']}) publishes at "
                         f"{s['published_at']}")
    if report["loops_truncated"]:
        items.append(f"  (only the first {MAX_LOOPS} loops are listed)")
    section("feedback loops:", items)
    dynamic = [f"  {d['at']}: {d['call']}({d['expression']}) in {d['function']}"
               for d in report["dynamic"]]
    section("dynamic event types (not string literals, not analysed):", dynamic)
    errors = [f"  {e['file']}{'' if e['line'] is None else ':' + str(e['line'])}: "
              f"{e['message']}" for e in report["errors"]]
    section("errors (files not analysed):", errors)
    lines.append("")
    lines.append(f"orphaned types: {n['orphans']}, unused subscriptions: "
                 f"{n['unused_subscriptions']}, loops: {n['loops']}, errors: {n['errors']}")
    lines.append(f"sha256: {report['sha256']}")
    return "\n".join(lines)


# One line in ``python -m resil --help``.
SUMMARY = "map publish/subscribe calls in Python sources: orphans, unused, loops"

DESCRIPTION = """\
Reads Python sources without running them and maps every
<object>.publish("type", ...) and <object>.subscribe("type", handler) call
whose type is a string literal: the event types, their publishers and
subscribers (file:line), orphaned types (published, never subscribed),
unused subscriptions (subscribed, never published), wildcard subscriptions
("graph.*", "*"), feedback loops through any chain of handlers, calls whose
type is not a literal ("dynamic"), and a sha256 of the report that does not
depend on the order of the paths or where the sources are.

exit status: 0 clean; 1 a loop or an orphaned type was found; 2 a usage
error (nothing analysed) or a file that could not be parsed (the report is
still printed, with the file and line)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m resil analyze`` command line."""
    parser = argparse.ArgumentParser(prog="python -m resil analyze", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true",
                        help="print the report as one JSON document instead of text")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a Python file, or a directory searched for *.py files")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m resil analyze [--json] PATH...``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = analyze(args.paths)
    except ValueError as e:
        parser.error(str(e))
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(render(report) + "\n")
    return exit_status(report)

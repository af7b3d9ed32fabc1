"""``python -m resil analyze``: publishers, subscribers, orphans, unused
subscriptions, wildcards, feedback loops and the report's hash, read from
sources that are never run."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from resil.cli import analyze as cli
from resil.cli import demo
from resil.cli.analyze import analyze

SAMPLE = Path(__file__).parent / "sample_project"
LOOP = ["contradiction.detected", "posterior.updated", "graph.edge_added"]


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def run_main(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        status = cli.main(argv)
    return status, out.getvalue()


def test_sample_project_event_types_publishers_and_subscribers() -> None:
    report = analyze(SAMPLE)
    assert report["files"] == ["app.py", "pipeline/audit.py", "pipeline/bayes.py",
                               "pipeline/detector.py", "pipeline/graph.py"]
    types = report["event_types"]
    assert {t: info["status"] for t, info in types.items()} == {
        "contradiction.detected": "ok", "graph.edge_added": "ok",
        "graph.node_added": "orphaned", "posterior.updated": "ok",
        "validation.completed": "unused"}
    assert {t: [p["at"] for p in info["publishers"]] for t, info in types.items()} == {
        "contradiction.detected": ["pipeline/detector.py:12"],
        "graph.edge_added": ["pipeline/graph.py:18"],
        "graph.node_added": ["pipeline/graph.py:13"],
        "posterior.updated": ["pipeline/bayes.py:13"],
        "validation.completed": []}
    assert types["graph.node_added"]["publishers"] == [
        {"at": "pipeline/graph.py:13", "function": "GraphBuilder.add_node"}]
    assert types["posterior.updated"]["subscribers"] == [
        {"at": "pipeline/audit.py:8", "handler": "self.on_posterior", "pattern": "posterior.*",
         "function": "Auditor.__init__",
         "defined_at": [{"at": "pipeline/audit.py:10", "function": "Auditor.on_posterior"}]},
        {"at": "pipeline/graph.py:8", "handler": "self.on_posterior_updated",
         "pattern": "posterior.updated", "function": "GraphBuilder.__init__",
         "defined_at": [{"at": "pipeline/graph.py:15",
                         "function": "GraphBuilder.on_posterior_updated"}]}]
    # keyword arguments, and a handler imported from another file
    assert types["validation.completed"]["subscribers"] == [
        {"at": "app.py:17", "handler": "record_validation", "pattern": "validation.completed",
         "function": "wire",
         "defined_at": [{"at": "pipeline/audit.py:18", "function": "record_validation"}]}]
    assert report["counts"] == {
        "files": 5, "event_types": 5, "publishers": 4, "subscribers": 5, "wildcards": 1,
        "components": 5, "orphans": 1, "unused_subscriptions": 1, "loops": 1, "dynamic": 1,
        "errors": 0}


def test_sample_project_orphan_unused_wildcard_and_dynamic() -> None:
    report = analyze(SAMPLE)
    assert report["orphans"] == ["graph.node_added"]
    assert report["unused_subscriptions"] == [
        {"pattern": "validation.completed", "at": "app.py:17", "handler": "record_validation"}]
    # posterior.updated is received only... by its exact subscriber and the pattern
    assert report["wildcards"] == [
        {"pattern": "posterior.*", "at": "pipeline/audit.py:8", "handler": "self.on_posterior",
         "matches": ["posterior.updated"]}]
    assert report["dynamic"] == [
        {"at": "pipeline/audit.py:15", "call": "publish", "expression": "f'audit.{kind}'",
         "function": "Auditor.report"}]
    assert report["errors"] == [] and report["loops_truncated"] is False


def test_sample_project_three_handler_loop() -> None:
    (loop,) = analyze(SAMPLE)["loops"]
    assert loop["types"] == LOOP
    assert loop["steps"] == [
        {"on": "contradiction.detected", "handler": "self.on_contradiction",
         "subscribed_at": "pipeline/bayes.py:8", "function": "BayesianUpdater.on_contradiction",
         "defined_at": "pipeline/bayes.py:10", "publishes": "posterior.updated",
         "published_at": "pipeline/bayes.py:13"},
        {"on": "posterior.updated", "handler": "self.on_posterior_updated",
         "subscribed_at": "pipeline/graph.py:8",
         "function": "GraphBuilder.on_posterior_updated", "defined_at": "pipeline/graph.py:15",
         "publishes": "graph.edge_added", "published_at": "pipeline/graph.py:18"},
        {"on": "graph.edge_added", "handler": "self.on_edge_added",
         "subscribed_at": "pipeline/detector.py:7",
         "function": "ContradictionDetector.on_edge_added", "defined_at": "pipeline/detector.py:9",
         "publishes": "contradiction.detected", "published_at": "pipeline/detector.py:12"}]


def test_sample_project_exit_status_text_and_json() -> None:
    status, text = run_main([str(SAMPLE)])
    assert status == 1
    assert ("contradiction.detected -> posterior.updated -> graph.edge_added -> "
            "contradiction.detected") in text
    assert "graph.node_added (published at pipeline/graph.py:13)" in text
    assert "validation.completed at app.py:17: record_validation" in text
    assert "pipeline/audit.py:15: publish(f'audit.{kind}') in Auditor.report" in text
    assert text.rstrip().endswith("sha256: " + analyze(SAMPLE)["sha256"])
    status, out = run_main(["--json", str(SAMPLE)])
    assert status == 1
    doc = json.loads(out)
    assert doc == analyze(SAMPLE)
    assert list(doc) == ["files", "counts", "event_types", "orphans", "unused_subscriptions",
                         "wildcards", "loops", "loops_truncated", "dynamic", "errors", "sha256"]
    assert doc["sha256"] == cli.report_hash(doc)


def test_python_m_resil_analyze_runs_as_a_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "resil", "analyze", "--json", str(SAMPLE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr == ""
    assert json.loads(proc.stdout)["sha256"] == analyze(SAMPLE)["sha256"]


def test_hash_ignores_path_order_location_and_repeats(tmp_path: Path) -> None:
    reference = analyze(SAMPLE)["sha256"]
    files = sorted(SAMPLE.rglob("*.py"))
    assert analyze(list(reversed(files)))["sha256"] == reference
    assert analyze([str(f) for f in files[2:] + files[:2]])["sha256"] == reference
    # a directory plus files inside it: each file is read once
    again = analyze([files[3], SAMPLE, files[0]])
    assert again["sha256"] == reference and again["counts"]["files"] == 5
    # the same tree somewhere else, under another name, from a relative path
    copy = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(SAMPLE, copy)
    assert analyze(copy)["sha256"] == reference
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "elsewhere")
        assert analyze(["renamed"])["sha256"] == reference
        assert analyze(["renamed/pipeline", "renamed/app.py"])["sha256"] == reference
    finally:
        os.chdir(cwd)
    # a change in the sources changes the hash
    graph = copy / "pipeline" / "graph.py"
    graph.write_text(graph.read_text().replace("graph.node_added", "graph.node_created"))
    changed = analyze(copy)
    assert changed["orphans"] == ["graph.node_created"]
    assert changed["sha256"] != reference


def test_resil_demo_has_one_healthy_type_and_no_findings() -> None:
    report = analyze(demo.__file__)
    assert report["files"] == ["demo.py"]
    assert list(report["event_types"]) == ["sensor.novelty"]
    info = report["event_types"]["sensor.novelty"]
    assert info["status"] == "ok"
    # the emitter's sink and the operator's note publish; the dashboard and the
    # archive subscribe, both nested in run_scheduler
    assert [p["function"] for p in info["publishers"]] == ["run_scheduler.sink",
                                                           "run_scheduler.main"]
    assert [(s["handler"], [d["function"] for d in s["defined_at"]])
            for s in info["subscribers"]] == [("dashboard", ["run_scheduler.dashboard"]),
                                              ("archive", ["run_scheduler.archive"])]
    for entry in info["publishers"] + info["subscribers"]:
        assert entry["at"].startswith("demo.py:")
    assert (report["orphans"], report["unused_subscriptions"], report["loops"],
            report["wildcards"], report["dynamic"], report["errors"]) == ([], [], [], [], [], [])
    source = Path(demo.__file__).read_text().splitlines()
    for entry in info["publishers"]:
        assert 'publish("sensor.novelty"' in source[int(entry["at"].split(":")[1]) - 1]
    for entry in info["subscribers"]:
        assert 'subscribe("sensor.novelty"' in source[int(entry["at"].split(":")[1]) - 1]
    proc = subprocess.run([sys.executable, "-m", "resil", "analyze", demo.__file__],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sensor.novelty: ok (2 published, 2 subscribed)" in proc.stdout


def test_wildcards_receive_by_prefix_and_star_receives_everything(tmp_path: Path) -> None:
    write(tmp_path, {"m.py": """\
        def setup(bus):
            bus.subscribe("graph.*", on_graph)
            bus.subscribe("metrics.*", on_graph)
            bus.publish("graph.node.x", {})
            bus.publish("graphs", {})
            bus.publish("graph", {})

        def on_graph(event):
            pass
        """})
    report = analyze(tmp_path)
    # "graph.*" receives a deeper type, not "graphs" nor "graph" itself
    assert report["wildcards"] == [
        {"pattern": "graph.*", "at": "m.py:2", "handler": "on_graph",
         "matches": ["graph.node.x"]},
        {"pattern": "metrics.*", "at": "m.py:3", "handler": "on_graph", "matches": []}]
    assert report["orphans"] == ["graph", "graphs"]  # sorted
    assert [u["pattern"] for u in report["unused_subscriptions"]] == ["metrics.*"]
    # patterns are not event types of their own
    assert list(report["event_types"]) == ["graph", "graph.node.x", "graphs"]
    write(tmp_path, {"n.py": """\
        async def audit(bus):
            bus.subscribe("*", print)
        """})
    report = analyze(tmp_path)
    assert report["orphans"] == [] and cli.exit_status(report) == 0
    assert report["wildcards"][-1]["matches"] == ["graph", "graph.node.x", "graphs"]
    assert report["event_types"]["graphs"]["subscribers"][0]["pattern"] == "*"


def test_call_forms_keywords_await_and_dynamic_types(tmp_path: Path) -> None:
    write(tmp_path, {"m.py": """\
        class Service:
            def __init__(self, bus, topic):
                self.bus = bus
                self.bus.subscribe(event_type="a", handler=self.on_a)
                bus.subscribe(topic, self.on_a)
                bus.subscribe(*topic)

            async def on_a(self, event):
                await self.bus.publish(event_type="b", payload={})
                await self.bus.publish("prefix." + event.event_type, {})
                self.bus.publish()

        publish("not.a.method", {})
        subscribe("not.a.method", print)
        """})
    report = analyze(tmp_path)
    assert list(report["event_types"]) == ["a", "b"]
    assert report["event_types"]["b"]["publishers"] == [{"at": "m.py:9",
                                                         "function": "Service.on_a"}]
    assert report["event_types"]["a"]["subscribers"][0]["handler"] == "self.on_a"
    assert report["dynamic"] == [
        {"at": "m.py:5", "call": "subscribe", "expression": "topic",
         "function": "Service.__init__"},
        {"at": "m.py:6", "call": "subscribe", "expression": "*topic",
         "function": "Service.__init__"},
        {"at": "m.py:10", "call": "publish", "expression": "'prefix.' + event.event_type",
         "function": "Service.on_a"},
        {"at": "m.py:11", "call": "publish", "expression": "(no event type)",
         "function": "Service.on_a"}]
    assert report["orphans"] == ["b"]


def test_loops_self_two_and_shared_types_each_once(tmp_path: Path) -> None:
    write(tmp_path, {"m.py": """\
        def setup(bus):
            bus.subscribe("z", on_z)
            bus.subscribe("y", on_y)
            bus.subscribe("x", on_x)
            bus.subscribe("w.*", lambda event: bus.publish("w.again", event.payload))

        async def on_z(event):
            await bus.publish("y", {})

        async def on_y(event):
            await bus.publish("z", {})
            await bus.publish("x", {})

        async def on_x(event):
            await bus.publish("x", {})
            await bus.publish("z", {})
        """})
    report = analyze(tmp_path)
    assert [loop["types"] for loop in report["loops"]] == [
        ["w.again"], ["x"], ["x", "z", "y"], ["y", "z"]]
    (w,) = [loop for loop in report["loops"] if loop["types"] == ["w.again"]]
    assert w["steps"] == [{"on": "w.again", "handler": "lambda event: bus.publish('w.again', "
                                                       "event.payload)",
                           "subscribed_at": "m.py:5", "function": "setup.<lambda>",
                           "defined_at": "m.py:5", "publishes": "w.again",
                           "published_at": "m.py:5"}]
    status, text = run_main([str(tmp_path)])
    assert status == 1 and "  x -> z -> y -> x\n" in text


def test_handler_resolution_scopes_bases_partial_and_nested_functions(tmp_path: Path) -> None:
    write(tmp_path, {
        "base.py": """\
            class Base:
                async def relay(self, event):
                    await self.bus.publish("ping", {})

            class Other:  # not Child's: its relay is not the handler
                async def relay(self, event):
                    await self.bus.publish("pong", {})
            """,
        "handlers.py": """\
            async def answer(event):
                await bus.publish("ping", {})
            """,
        "m.py": """\
            import functools
            from base import Base
            from handlers import answer as reply

            def answer(event):  # shadowed inside setup, not the handler
                pass

            class Child(Base):
                def __init__(self, bus):
                    self.bus = bus
                    bus.subscribe("ping", self.relay)

            def setup(bus):
                def later(event):
                    def nested():
                        return bus.publish("never", {})  # not in later's own body
                    return nested
                bus.subscribe("pong", reply)
                bus.subscribe("ping", functools.partial(later, 1))
                bus.subscribe("never", later)
                bus.subscribe("ping", unknown_handler)

                @register(bus.publish("registered", {}))  # runs in setup
                def on_registered(event, default=bus.publish("registered", {})):
                    pass
                bus.subscribe("registered", on_registered)

            class Panel:
                def answer(self, event):
                    return self.bus.publish("pang", {})

                def __init__(self, bus):
                    bus.subscribe("pang", answer)  # the module's: names in a class body
                                                   # are not seen from its methods
            """})
    report = analyze(tmp_path)
    subs = {s["at"]: [d["function"] for d in s["defined_at"]]
            for s in report["event_types"]["ping"]["subscribers"]}
    assert subs == {"m.py:11": ["Base.relay"], "m.py:19": ["setup.later"], "m.py:21": []}
    assert report["event_types"]["pong"]["subscribers"][0]["defined_at"] == [
        {"at": "handlers.py:1", "function": "answer"}]
    # Base.relay (subscribed to ping) publishes ping; later publishes nothing itself
    assert [loop["types"] for loop in report["loops"]] == [["ping"]]
    assert report["event_types"]["never"]["publishers"] == [
        {"at": "m.py:16", "function": "setup.later.nested"}]
    assert report["event_types"]["pang"]["subscribers"][0]["defined_at"] == [
        {"at": "m.py:5", "function": "answer"}]
    # a decorator and a default are evaluated in the enclosing function
    assert [p["function"] for p in report["event_types"]["registered"]["publishers"]] == [
        "setup", "setup"]


def test_a_file_reached_twice_is_read_once(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/real.py": 'bus.publish("once", {})\n'})
    (tmp_path / "link.py").symlink_to(tmp_path / "pkg" / "real.py")
    for paths in ([tmp_path], [tmp_path / "pkg" / "real.py", tmp_path],
                  [tmp_path, tmp_path / "pkg", tmp_path / "link.py"]):
        report = analyze(paths)
        # under the smaller of its names, whichever path reached it first
        assert report["files"] == ["link.py"], paths
        assert report["event_types"]["once"]["publishers"] == [
            {"at": "link.py:1", "function": "<module>"}]


def test_a_file_that_does_not_parse_is_reported_and_the_rest_analysed(tmp_path: Path) -> None:
    write(tmp_path, {"good.py": 'bus.publish("lonely", {})\n',
                     "pkg/bad.py": "def broken(:\n    pass\n",
                     ".hidden/skipped.py": "def broken(:\n",
                     "__pycache__/skipped.py": "def broken(:\n",
                     "notes.txt": "bus.publish('text', {})\n"})
    (tmp_path / "nul.py").write_bytes(b"x = 1\0\n")
    report = analyze(tmp_path)
    assert report["files"] == ["good.py", "nul.py", "pkg/bad.py"]
    assert [(e["file"], e["line"]) for e in report["errors"]] == [("nul.py", None),
                                                                 ("pkg/bad.py", 1)]
    assert report["errors"][1]["message"].startswith("SyntaxError: ")
    assert report["orphans"] == ["lonely"]
    assert cli.exit_status(report) == 2
    status, text = run_main([str(tmp_path)])
    assert status == 2
    assert "pkg/bad.py:1: SyntaxError:" in text and "lonely" in text
    # a file named explicitly is read whatever its name
    assert analyze(tmp_path / "notes.txt")["orphans"] == ["text"]


def test_deep_expressions_do_not_crash_the_analysis(tmp_path: Path) -> None:
    chain = "x" + ".a" * 2500  # parses, but too deep to print back
    (tmp_path / "chain.py").write_text(f'bus.subscribe("t", {chain})\n'
                                       f'bus.publish("t", {{}})\nbus.publish({chain}, {{}})\n')
    # too deep for the parser itself from CPython 3.11 (3.10 parses it)
    (tmp_path / "sum.py").write_text("x = " + " + ".join(["1"] * 50_000) + "\n")
    report = analyze(tmp_path)
    assert report["event_types"]["t"]["subscribers"][0]["handler"] == (
        "<expression too deep to show>")
    assert report["dynamic"][0]["expression"] == "<expression too deep to show>"
    if sys.version_info >= (3, 11):
        assert [(e["file"], e["line"]) for e in report["errors"]] == [("sum.py", None)]
        assert report["errors"][0]["message"].startswith("RecursionError")
    else:  # CPython 3.10's parser takes it: the analysis walks it without recursing
        assert report["errors"] == [] and report["files"] == ["chain.py", "sum.py"]


def test_loop_enumeration_stops_at_its_limit(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # every handler publishes every type: a complete graph of 9 types
    names = [f"t{i}" for i in range(9)]
    lines = ["def setup(bus):"] + [f'    bus.subscribe("{n}", h)' for n in names]
    lines += ["async def h(event):"] + [f'    await bus.publish("{n}", {{}})' for n in names]
    (tmp_path / "m.py").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(cli, "MAX_LOOPS", 50)
    report = analyze(tmp_path)
    assert report["loops_truncated"] is True and len(report["loops"]) == 50
    assert "(only the first 50 loops are listed)" in cli.render(report)
    assert len({tuple(loop["types"]) for loop in report["loops"]}) == 50


@pytest.mark.parametrize("paths, error, match", [
    (123, TypeError, "paths must be a path"),
    (True, TypeError, "paths must be a path"),
    (float("nan"), TypeError, "paths must be a path"),
    ([b"x.py"], TypeError, "paths must hold str"),
    ([None], TypeError, "paths must hold str"),
    ([], ValueError, "at least one"),
    (["/no/such/dir"], ValueError, "no such file or directory: '/no/such/dir'"),
    ("/dev/null", ValueError, "not a file or a directory"),
])
def test_analyze_refuses_bad_paths(paths: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        analyze(paths)


def test_command_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["/no/such/dir"], [str(SAMPLE), "/no/such/dir"], ["--bogus", str(SAMPLE)]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr()
        assert err.out == "" and "usage: python -m resil analyze" in err.err


def test_python_m_resil_help_lists_analyze(capsys: pytest.CaptureFixture[str]) -> None:
    from resil import __main__ as main

    assert main.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert f"  analyze {cli.SUMMARY}\n" in text
    assert "[--json] PATH [PATH ...]" in text
    assert all(len(line) <= 79 for line in text.splitlines())
    with pytest.raises(SystemExit) as exit_:
        main.main(["analyze", "--help"])
    assert exit_.value.code == 0
    assert "exit status" in capsys.readouterr().out


def test_a_directory_that_cannot_be_listed_is_an_error_reported_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"ok.py": 'bus.publish("t", {})\nbus.subscribe("t", print)\n',
                     "locked/hidden.py": ""})
    real_walk = os.walk

    def walk(top: str, onerror: Any = None) -> Any:
        for entry in real_walk(top, onerror=onerror):
            if entry[0].endswith("locked"):  # as os.walk reports an unreadable one
                onerror(PermissionError(13, "Permission denied", entry[0]))
                continue
            yield entry

    monkeypatch.setattr(cli.os, "walk", walk)
    # the directory is reached from both paths given
    report = analyze([tmp_path, tmp_path / "locked"])
    assert report["errors"] == [{"file": "locked", "line": None,
                                 "message": "cannot list: Permission denied"}]
    assert report["files"] == ["ok.py"] and cli.exit_status(report) == 2

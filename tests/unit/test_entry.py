"""The console script's early start: which SPEC it reads and which files it would probe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scenerender import entry


@pytest.mark.parametrize(
    ("argv", "spec"),
    [
        (["render", "job.json", "-o", "out.mp4"], "job.json"),
        (["render", "-o", "out.mp4", "--json", "job.json"], "job.json"),
        (["render", "--output", "job.json", "other.json"], "other.json"),  # an option's value is not SPEC
        (["render", "--output=out.mp4", "job.json"], "job.json"),
        (["render", "-o", "out.mp4", "--", "-odd.json"], "-odd.json"),
        (["validate", "--probe", "job.json"], "job.json"),
        (["validate", "job.json"], None),  # validating without --probe probes nothing
        (["submit", "job.json"], None),
        (["render"], None),
        ([], None),
    ],
)
def test_spec_argument(argv: list[str], spec: str | None) -> None:
    assert entry.spec_argument(argv) == (Path(spec) if spec else None)


def test_local_inputs_in_spec_order_relative_to_the_spec(tmp_path: Path) -> None:
    spec = {
        "segments": [{"id": "a", "url": "media/a.mp4"}, {"id": "b", "url": "gs://bucket/b.mp4"}],
        "audio": {
            "clips": [
                {"url": "/abs/line.wav"},
                {"url": "https://example.com/music.wav"},
                {"url": "c:/windows.wav"},
                {"url": 7},
                "not a clip",
            ]
        },
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    assert entry.local_inputs(path) == [tmp_path / "media/a.mp4", Path("/abs/line.wav")]


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"segments": {"id": "a"}}', '{"audio": []}'])
def test_local_inputs_of_what_is_not_a_spec(tmp_path: Path, text: str) -> None:
    path = tmp_path / "job.json"
    path.write_text(text)
    assert entry.local_inputs(path) == []


def test_local_inputs_leaves_a_huge_spec_to_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"segments": [{"url": "a.mp4"}], "pad": "x" * entry.SPEC_READ_LIMIT}))
    assert entry.local_inputs(path) == []
    assert entry.local_inputs(tmp_path / "missing.json") == []


def test_a_long_scene_starts_a_bounded_number(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"segments": [{"url": f"s{i}.mp4"} for i in range(500)]}))
    assert len(entry.local_inputs(path)) == entry.EARLY_PROBE_LIMIT


def test_the_options_that_take_a_value_are_the_clis() -> None:
    """The early start cannot load the CLI to ask it; this keeps its copy of the list true."""
    import typer.main

    from scenerender.cli import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    with_value: set[str] = set()
    for name in ("render", "validate"):
        for param in commands[name].params:
            if param.param_type_name == "option" and not param.is_flag:
                with_value.update(param.opts + param.secondary_opts)
    assert with_value == entry._OPTIONS_WITH_VALUE


_SIGNALS_AFTER_START = """
import signal, sys
signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
from scenerender.entry import stop_on_signals
from scenerender.errors import Stopped
stop_on_signals()
print(signal.getsignal(signal.SIGHUP) is signal.SIG_IGN)
try:
    signal.raise_signal(signal.SIGTERM)
except Stopped as stopped:
    print(stopped.signum == signal.SIGTERM, stopped.exit_code)
signal.raise_signal(signal.SIGTERM)  # a second one does not cut the cleanup short
print("after the second")
"""


def test_sigterm_unwinds_once_and_an_ignored_sighup_stays_ignored() -> None:
    done = subprocess.run([sys.executable, "-c", _SIGNALS_AFTER_START], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["True", "True 143", "after the second"]


_SIGNAL_TAKEN_BY_ANOTHER_THREAD = """
import signal, threading, time
from scenerender.entry import stop_on_signals
from scenerender.errors import Stopped
stop_on_signals()
other = threading.Thread(target=time.sleep, args=(30,), daemon=True)
other.start()
threading.Timer(0.3, signal.pthread_kill, (other.ident, signal.SIGTERM)).start()
try:
    threading.Event().wait()  # a main thread blocked on a lock, as on a render's futures
except Stopped as stopped:
    print("stopped", stopped.signum == signal.SIGTERM)
"""


def test_a_stop_signal_another_thread_took_reaches_the_blocked_main_thread() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SIGNAL_TAKEN_BY_ANOTHER_THREAD], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped True"

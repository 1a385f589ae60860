"""Issue #24: `scenerender dev up` owns its ports. Two folders' stacks at once both work; a port
the user chose that is taken is refused naming its holder; `dev status` tells the truth when
another server answers on a stack's port. Through the installed `scenerender`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_run import bare_env, run
from tests.mediagen import make_video

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


@pytest.fixture
def folders(tmp_path: Path) -> Iterator[dict[str, Path]]:
    made = {name: tmp_path / name for name in ("a", "b", "c")}
    for folder in made.values():
        folder.mkdir()
    try:
        yield made
    finally:
        for folder in made.values():  # whatever a failed assertion left running
            run("dev", "down", cwd=folder, timeout=120)


def up(folder: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = run("dev", "up", "--json", cwd=folder, timeout=300)
    return done, (json.loads(done.stdout) if done.returncode == 0 else {})


def status(folder: Path) -> tuple[int, dict[str, Any]]:
    done = run("dev", "status", cwd=folder, timeout=60)
    return done.returncode, json.loads(done.stdout)


def render_on(folder: Path, env: dict[str, str], job_id: str) -> dict[str, Any]:
    make_video(folder / "seg.mp4", width=320, height=180, fps=25, duration=0.5)
    spec = folder / f"{job_id}.json"
    spec.write_text(
        json.dumps(
            {
                "version": 1,
                "job_id": job_id,
                "project_id": "p",
                "scene_id": "s",
                "segments": [{"id": "a", "url": "seg.mp4"}],
            }
        )
    )
    done = run("submit", spec, "--wait", "--json", cwd=folder, env=bare_env(**env), timeout=300)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_two_folders_run_two_working_stacks_and_a_taken_chosen_port_is_refused(folders: dict[str, Path]) -> None:
    a, first = up(folders["a"])
    assert a.returncode == 0, a.stderr
    # dev up serves the web client (issue #25) and prints its URL; the page answers there.
    web = re.search(r"^web client: (http://127\.0\.0\.1:\d+/)$", a.stderr, re.MULTILINE)
    assert web, a.stderr
    assert 'src="app.js"' in httpx.get(web[1], timeout=30).text
    b, second = up(folders["b"])
    assert b.returncode == 0, b.stderr
    ports_a, ports_b = (status(f)[1]["ports"] for f in (folders["a"], folders["b"]))
    assert not set(ports_a.values()) & set(ports_b.values())
    # B met A's ports (or another engineer's stack on the defaults) and said which it took instead.
    assert "is taken by pid" in b.stderr and "instead" in b.stderr, b.stderr
    for folder in (folders["a"], folders["b"]):
        code, doc = status(folder)
        assert code == 0 and doc["running"] and doc["problems"] == [], doc
    # Each stack renders its own job; neither's worker took the other's.
    for folder, env, job_id in ((folders["a"], first["env"], "dev-a"), (folders["b"], second["env"], "dev-b")):
        assert render_on(folder, env, job_id)["status"] == "COMPLETED"
    for folder, job_id, other in ((folders["a"], "dev-a", "dev-b"), (folders["b"], "dev-b", "dev-a")):
        env = bare_env(**(first if folder == folders["a"] else second)["env"])
        assert run("watch", job_id, "--json", env=env).returncode == 0
        assert run("watch", other, "--json", env=env).returncode == 2  # NOT_FOUND on this stack

    # A port chosen with an option that another stack holds: refused, naming the holder.
    c = run("dev", "up", "--gcs-port", str(ports_a["gcs"]), "--json", cwd=folders["c"], timeout=120)
    assert c.returncode == 1, c.stderr
    error = json.loads(c.stdout)["error"]
    assert f"--gcs-port {ports_a['gcs']}" in error["message"] and "fake-gcs-server" in error["message"]
    assert f"in {folders['a']}" in error["message"]  # the holder's folder, so the user finds its stack
    assert status(folders["c"])[0] == 1


def test_status_tells_the_truth_when_another_server_answers_on_a_port(folders: dict[str, Path]) -> None:
    a, _ = up(folders["a"])
    assert a.returncode == 0, a.stderr
    code, doc = status(folders["a"])
    assert code == 0, doc
    state = json.loads((folders["a"] / ".scenerender" / "dev" / "state.json").read_text())
    gcs = next(p for p in state["processes"] if p["name"] == "gcs")
    os.killpg(gcs["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 10
    impostor = None
    try:
        while impostor is None and time.monotonic() < deadline:
            candidate = subprocess.Popen(
                [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(gcs["port"])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
            if candidate.poll() is None:
                impostor = candidate
        assert impostor is not None, "the port did not come free"
        code, doc = status(folders["a"])
        assert code == 1 and not doc["running"], doc
        assert doc["processes"]["gcs"] is False
        assert "gcs is not running" in doc["problems"], doc
        # `up` does not take the stranger's server for its own: it starts a whole new stack.
        again = run("dev", "up", cwd=folders["a"], timeout=300)
        assert again.returncode == 0, again.stderr
        assert "started" in again.stderr and "reused" not in again.stderr
        assert f"gcs: port {gcs['port']} is taken by pid {impostor.pid}" in again.stderr, again.stderr
        assert status(folders["a"])[0] == 0
    finally:
        if impostor is not None:
            impostor.terminate()
            impostor.wait(timeout=10)


@pytest.mark.parametrize("service", ["pubsub", "auth_hub", "auth_logging"])
def test_a_port_taken_after_it_was_claimed_is_given_up_and_the_stack_starts_on_another(
    tmp_path: Path, service: str
) -> None:
    """`up` claims every port first, then starts the pieces one after another over tens of
    seconds; meanwhile another process may take a claimed port. Here one does: a listener on
    the Pub/Sub port (or the Firebase CLI's hub or logging port: the CLI exits "port taken"),
    bound right after the claim. `up` sees the port held by a process not of its own piece,
    stops what it started, claims again (moving that port) and starts a stack that works. A
    port the user chose is not moved: the same race is an error naming the holder."""
    from scenerender.dev.devstack import DevStack
    from scenerender.dev.procs import PortTakenError
    from scenerender.settings import Settings
    from tests.integration.conftest import stack_ports

    intruders: list[socket.socket] = []

    class Raced(DevStack):
        def claim_ports(self) -> None:
            super().claim_ports()
            if not intruders:  # the first start only: the port is taken between claim and bind
                intruder = socket.socket()
                intruder.bind(("127.0.0.1", getattr(self.state.ports, service)))
                intruder.listen()
                intruders.append(intruder)

    settings = Settings(sweep_interval_s=0)
    stack = Raced(settings, state_dir=tmp_path / "raced", ports=stack_ports(), workers=0)
    try:
        assert stack.up()
        taken = intruders[0].getsockname()[1]
        assert getattr(stack.state.ports, service) != taken
        notes = "\n".join(stack.notes)
        assert f"port {taken} was taken while the stack started; starting again" in notes, notes
        assert f"{service}: port {taken} is taken by pid {os.getpid()}" in notes, notes
        doc = stack.status()
        assert doc["running"] and doc["problems"] == [], doc
        # The stack works: a function answers (the sweeper reads Firestore), and the Pub/Sub
        # emulator on its new port holds the topics the stack made.
        sweep_url = f"http://127.0.0.1:{stack.state.ports.function_port('sweep')}/"
        assert httpx.post(sweep_url, json={}, timeout=60).status_code == 200
        topics = httpx.get(f"http://127.0.0.1:{stack.state.ports.pubsub}/v1/projects/{settings.project_id}/topics")
        assert settings.render_topic in topics.text, topics.text
    finally:
        stack.down()
        for intruder in intruders:
            intruder.close()

    if service != "pubsub":
        return  # the hub and logging ports are not options the user chooses
    intruders.clear()
    chosen = Raced(settings, state_dir=tmp_path / "chosen", ports=stack_ports(), workers=0, fixed_ports={"pubsub"})
    try:
        with pytest.raises(PortTakenError) as refused:
            chosen.up()
        taken = intruders[0].getsockname()[1]
        assert refused.value.port == taken and f"port {taken} is held by pid {os.getpid()}" in refused.value.message
        assert chosen.load() is None  # stopped what it had started
    finally:
        chosen.down()
        for intruder in intruders:
            intruder.close()

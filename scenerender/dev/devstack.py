"""The local cloud: Google's Pub/Sub and Firestore emulators, fake-gcs-server, the functions and workers.

``DevStack.up()`` starts each piece in its own process group (the gcloud wrapper leaves its
Java child running when only the wrapper is killed), waits until it answers, creates the
buckets, topics and subscriptions the settings name, wires the push subscriptions to the
functions exactly as Eventarc would, and records what it started in a state file.
``down()`` stops only what that file lists. The pieces' command lines and the resources made
in them are in ``scenerender.dev.services``; ports and processes in ``scenerender.dev.procs``.

Size: one lifecycle, start, reuse, check and stop, all reading and writing the same state
file; what is left here is the order in which the pieces start and wait for each other.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scenerender.dev.checkout import firestore_rules, web_dist
from scenerender.dev.functions import FUNCTIONS
from scenerender.dev.procs import (
    DevStackError,
    PortTakenError,
    ProcessRecord,
    describe_holders,
    free_run,
    group_alive,
    group_listens,
    http_ok,
    pid_alive,
    port_answers,
    port_free,
    reap,
    record_alive,
    record_present,
    start_ticks,
)
from scenerender.dev.services import (
    auth_argv,
    create_buckets,
    create_push_subscriptions,
    create_topics,
    firestore_argv,
    function_argv,
    gcs_argv,
    load_firestore_rules,
    pubsub_argv,
    write_service_account_key,
)
from scenerender.settings import Settings, child_env, env_value

START_TIMEOUT_S = 90.0
PORT_TAKEN_S = 2.0  # a port held by another process this long while our piece starts: taken
PORT_ATTEMPTS = 3  # starts of the whole stack when a claimed port is taken meanwhile


def _held_by_another(pgid: int, port: int) -> bool:
    """Something listens on or holds ``port`` and it is not the process group ``pgid``."""
    return not port_free(port) and not group_listens(pgid, port)


@dataclass
class Ports:
    pubsub: int = 8085
    firestore: int = 8086
    gcs: int = 4443
    functions: int = 8090  # the functions, in FUNCTIONS order, on this port and the next ones
    web: int = 8080  # the web client (scenerender.dev.webserve), when it is built
    auth: int = 9099  # the Firebase Auth emulator (the Firebase SDKs' default port)
    # The Firebase CLI's own hub and logging ports, named so that two stacks do not collide.
    auth_hub: int = 4400
    auth_logging: int = 4500

    def function_port(self, name: str) -> int:
        return self.functions + list(FUNCTIONS).index(name)

    @staticmethod
    def span(name: str) -> int:
        """How many consecutive ports the service ``name`` takes from its own."""
        return len(FUNCTIONS) if name == "functions" else 1


@dataclass
class State:
    ports: Ports
    project_id: str
    processes: list[ProcessRecord] = field(default_factory=list)
    executions: bool = False  # the renderer's mode the stack was started in (``DevStack(executions=)``)


class DevStack:
    """Start, reuse and stop the local cloud."""

    def __init__(
        self,
        settings: Settings,
        *,
        state_dir: Path | None = None,
        ports: Ports | None = None,
        workers: int = 1,
        fixed_ports: set[str] | None = None,
        executions: bool = False,
    ) -> None:
        """``executions``: no long-running workers; the functions launch executions of local worker
        processes (``launcher.LocalLauncher``), as they launch Cloud Run executions in the cloud."""
        self.settings = settings
        self.state_dir = state_dir or Path(settings.dev_dir)
        self.ports = ports or Ports()
        self.workers = 0 if executions else workers
        self.executions = executions
        # Ports the user chose (``--gcs-port``): taken ones are an error, not replaced by free ones.
        self.fixed_ports = set(fixed_ports or ())
        self.notes: list[str] = []  # what `up` changed on its own (a port taken by another process)
        self.state = State(ports=self.ports, project_id=settings.project_id, executions=executions)
        # Our own children: kept so they can be waited for (and not warned about) when stopped.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def load(self) -> State | None:
        if not self.state_file.exists():
            return None
        raw = json.loads(self.state_file.read_text())
        return State(
            ports=Ports(**raw["ports"]),
            project_id=raw["project_id"],
            processes=[ProcessRecord(**p) for p in raw["processes"]],
            executions=bool(raw.get("executions", False)),
        )

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(asdict(self.state), indent=2))

    def overrides(self) -> dict[str, Any]:
        """The settings that point a client at this stack (``Settings`` field -> value)."""
        p = self.state.ports
        return {
            "pubsub_emulator_host": f"127.0.0.1:{p.pubsub}",
            "firestore_emulator_host": f"127.0.0.1:{p.firestore}",
            "storage_emulator_host": f"http://127.0.0.1:{p.gcs}",
            "credentials_file": str((self.state_dir / "signer-key.json").resolve()),
            "project_id": self.state.project_id,
            "signing_endpoint": f"http://127.0.0.1:{p.gcs}",
            "api_url": f"http://127.0.0.1:{p.function_port('api')}",
            # The functions accept the Auth emulator's unsigned tokens only with this set.
            "auth_emulator_host": f"127.0.0.1:{p.auth}",
            "dev_dir": str(self.state_dir.resolve()),
            **({"local_executions_dir": str(self.executions_dir)} if self.state.executions else {}),
            # The same input allow-list as terraform/main.tf: the media bucket (each user's
            # users/{uid}/, and the prefixes the operator shares), never the render bucket.
            "allowed_gs_buckets": self.settings.allowed_gs_buckets or [self.settings.media_bucket],
            # Plus the sample scenes dev up publishes for the web page (scenerender.dev.webserve).
            "shared_media_prefixes": list(
                dict.fromkeys([*self.settings.shared_media_prefixes, f"gs://{self.settings.media_bucket}/samples/"])
            ),
        }

    def client_settings(self) -> Settings:
        """The settings of a client of this stack: this process's, pointed at the stack."""
        return self.settings.model_copy(update=self.overrides())

    def env(self) -> dict[str, str]:
        """The environment a shell or child process needs to use this stack."""
        env = {Settings.env_name(field): env_value(value) for field, value in self.overrides().items()}
        # Google's clients in a child find the project here (the emulators have no metadata server).
        return {"GOOGLE_CLOUD_PROJECT": self.state.project_id, **env}

    @property
    def executions_dir(self) -> Path:
        return (self.state_dir / "executions").resolve()

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.state.ports.web}/"

    @property
    def web_config_path(self) -> Path:
        return self.state_dir / "web-config.json"

    def web_running(self) -> bool:
        return any(p.name == "web" for p in self.state.processes)

    def publish_web_samples(self, samples: list[dict[str, Any]]) -> None:
        """Offer these sample scenes on the page (its config.json is read on each request)."""
        from scenerender.dev.webserve import write_json

        config = json.loads(self.web_config_path.read_text())
        config["samples"] = samples
        write_json(self.web_config_path, config)

    def status(self) -> dict[str, Any]:
        """The truth about this folder's stack: each process alive (the same process, not a
        reused pid) and, for a server, listening on its own port itself."""
        state = self.load()
        where = str(self.state_dir.resolve())
        if state is None:
            return {"running": False, "state_dir": where, "processes": {}, "problems": ["no stack was started here"]}
        alive = {p.name: record_alive(p) for p in state.processes}
        problems = [f"{name} is not running" for name, ok in alive.items() if not ok]
        problems += [
            f"{p.name}: port {p.port} is not served by it"
            + (f" (held by {describe_holders(p.port)})" if not port_free(p.port) else "")
            for p in state.processes
            if p.port and alive[p.name] and not group_listens(p.pid, p.port)
        ]
        return {
            "running": bool(alive) and not problems,
            "state_dir": where,
            "processes": alive,
            "ports": asdict(state.ports),
            "executions": state.executions,
            "problems": problems,
        }

    def claim_ports(self) -> None:
        """Make sure every port the stack will serve on is free before anything starts.

        A default port another process holds (another folder's stack, most often) is replaced
        by a free one, noted in ``notes``; a port the user chose that is taken is an error that
        names the process holding it. (Between this check and the start another process may
        still take one: the readiness check, which wants our own process on the port, says so,
        and ``up`` starts again on other ports.)
        """
        ports = self.state.ports
        taken_by_us: set[int] = set()
        for name, port in asdict(ports).items():
            span = range(port, port + Ports.span(name))
            busy = [p for p in span if not port_free(p) or p in taken_by_us]
            if busy:
                who = describe_holders(busy[0])
                if name in self.fixed_ports:
                    raise DevStackError(
                        f"--{name}-port {port}: port {busy[0]} is taken by {who}; stop it or choose another port"
                    )
                new = free_run(Ports.span(name), avoid=taken_by_us)
                setattr(ports, name, new)
                self.notes.append(f"{name}: port {busy[0]} is taken by {who}; using {new} instead")
                span = range(new, new + Ports.span(name))
            taken_by_us.update(span)

    def start_process(
        self, name: str, argv: list[str], env: dict[str, str], ready: Callable[[], bool], port: int = 0
    ) -> None:
        """Start ``argv`` in its own process group, logging to the state dir; wait until ``ready``
        and, with ``port``, until the port is served by this very process group (a server that
        held the port before would answer ``ready`` too)."""
        self.wait_ready(name, self.spawn(name, argv, env, port), ready, port)

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], port: int = 0, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own process group, logging to the state dir; recorded at once."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self._children[proc.pid] = proc
        self.state.processes.append(
            ProcessRecord(name, proc.pid, argv, str(log_path), port=port, started=start_ticks(proc.pid) or 0)
        )
        self._save()
        return proc

    def wait_ready(
        self,
        name: str,
        proc: subprocess.Popen[bytes],
        ready: Callable[[], bool],
        port: int = 0,
        also: tuple[int, ...] = (),
    ) -> None:
        """Wait until ``ready`` and, with ``port``, until this process group serves it (and the
        ports ``also`` names: the Firebase CLI's hub and logging ports). A port another process
        holds for ``PORT_TAKEN_S`` while ours does not is ``PortTakenError`` at once (a server
        that cannot bind may retry for a while or keep running unbound); so is a piece that
        exits while another process holds one of its ports (the Firebase CLI exits "port taken")."""
        log_path = self.state_dir / f"{name}.log"
        ports = [q for q in (port, *also) if q]
        deadline = time.monotonic() + START_TIMEOUT_S
        taken_since: float | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if ready() and all(group_listens(proc.pid, q) for q in ports):
                return
            if any(_held_by_another(proc.pid, q) for q in ports):
                # Held twice a while apart, not the moment between our own bind and listen.
                taken_since = taken_since or time.monotonic()
                if time.monotonic() - taken_since >= PORT_TAKEN_S:
                    break
            else:
                taken_since = None
            time.sleep(0.2)
        tail = log_path.read_text(errors="replace")[-2000:]
        taken = next((q for q in ports if _held_by_another(proc.pid, q)), 0)
        held = f"; port {taken} is held by {describe_holders(taken)}" if taken else ""
        what = "exited" if proc.poll() is not None else f"did not start within {START_TIMEOUT_S:.0f} s"
        if taken and proc.poll() is None:
            what = "could not take its port"
        message = f"{name} {what}{held}; log {log_path}:\n{tail}"
        raise PortTakenError(message, taken) if taken else DevStackError(message)

    def up(self) -> bool:
        """Start the stack, or reuse the one already running. Returns True if it started anything."""
        existing = self.load()
        if existing is not None:
            self.state = existing
            if self.status()["running"]:
                if existing.executions != self.executions:
                    running, asked = ("with", "without") if existing.executions else ("without", "with")
                    raise DevStackError(
                        f"this folder's local cloud runs {running} --executions; run `scenerender dev down` "
                        f"first to start it {asked}"
                    )
                return False
            self.down()
            self.state = State(ports=self.ports, project_id=self.settings.project_id, executions=self.executions)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.claim_ports()
            try:
                self._start_all()
                return True
            except PortTakenError as exc:
                # Claimed free, then taken by another process before our piece bound it (the
                # pieces start one after another over tens of seconds). Unless the user chose
                # that port, start again: claim_ports moves whatever is still held.
                self.down()
                if attempt == PORT_ATTEMPTS or exc.port in self._chosen_ports():
                    raise
                self.notes.append(f"port {exc.port} was taken while the stack started; starting again")
                self.state = State(ports=self.ports, project_id=self.settings.project_id, executions=self.executions)
            except BaseException:
                self.down()
                raise
        raise AssertionError("unreachable")

    def _chosen_ports(self) -> set[int]:
        """The ports the user chose (``fixed_ports``), each service's whole span."""
        ports = asdict(self.state.ports)
        return {p for name in self.fixed_ports for p in range(ports[name], ports[name] + Ports.span(name))}

    def _start_all(self) -> None:
        p, s = self.state.ports, self.settings
        # The pieces run with this stack's settings (those of a test's stack are given, not read
        # from this process's environment), pointed at the stack.
        base_env = child_env({**self.settings.env_vars(), **self.env()})
        # The Firebase CLI takes the longest to start (node loads the whole CLI): started
        # first, waited for last.
        auth = self._spawn_auth(base_env)
        self.start_process(
            "pubsub",
            pubsub_argv(s, p.pubsub),
            base_env,
            lambda: http_ok(f"http://127.0.0.1:{p.pubsub}/"),
            p.pubsub,
        )
        self.start_process(
            "firestore",
            firestore_argv(p.firestore),
            base_env,
            lambda: http_ok(f"http://127.0.0.1:{p.firestore}/"),
            p.firestore,
        )
        # Local clients that read with a user's ID token meet the same rules as in the cloud (the
        # pipeline's own clients read as the emulator's admin, as its service accounts bypass rules).
        load_firestore_rules(p.firestore, s.project_id, firestore_rules(s))
        create_topics(self.client_settings())
        self.start_process(
            "gcs",
            gcs_argv(s, p.gcs),
            base_env,
            lambda: http_ok(f"http://127.0.0.1:{p.gcs}/storage/v1/b"),
            p.gcs,
        )
        create_buckets(self.client_settings())
        write_service_account_key(self.state_dir / "signer-key.json", s.project_id)
        for name, (target, signature) in FUNCTIONS.items():
            port = p.function_port(name)
            self.start_process(
                f"function-{name}",
                function_argv(s, target, signature, port),
                base_env,
                functools.partial(port_answers, port),
                port,
            )
        create_push_subscriptions(self.client_settings(), lambda name: f"http://127.0.0.1:{p.function_port(name)}/")
        if s.sweep_interval_s > 0:
            # Cloud Scheduler's part: the sweeper function called on a schedule, whether or not
            # any worker or execution is alive (scenerender.dev.scheduler).
            self.start_process(
                "scheduler",
                [
                    sys.executable,
                    "-m",
                    "scenerender.dev.scheduler",
                    f"http://127.0.0.1:{p.function_port('sweep')}/",
                    "--every",
                    str(s.sweep_interval_s),
                ],
                base_env,
                lambda: True,
            )
        self.wait_ready(
            "auth", auth, lambda: http_ok(f"http://127.0.0.1:{p.auth}/"), p.auth, also=(p.auth_hub, p.auth_logging)
        )
        self._start_web(base_env)
        # Workers on one machine share its cores, as tasks of a Cloud Run job each have their own.
        worker_env = {"SCENERENDER_CPUS": str(max(1, (os.cpu_count() or 1) // max(1, self.workers))), **base_env}
        if self.workers == 1:
            worker_env.setdefault("SCENERENDER_SPLIT_MIN_SEGMENTS", "0")  # nobody to share encodes with
        if self.executions:
            # The executions' tasks start from this environment, as a Cloud Run job's tasks start
            # from its template (launcher.LocalLauncher; jobs.run overrides go on top).
            self.executions_dir.mkdir(parents=True, exist_ok=True)
            template = {k: v for k, v in base_env.items() if k != Settings.env_name("cpus")}
            (self.executions_dir / "template-env.json").write_text(json.dumps(template))
        for index in range(self.workers):
            self.start_process(
                f"worker-{index}",
                [sys.executable, "-m", "scenerender.pipeline.worker", "--serve"],
                worker_env,
                lambda: True,
            )

    def _spawn_auth(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """The Firebase Auth emulator, configured by a firebase.json of its own (no UI, every port named)."""
        p = self.state.ports
        # Absolute: the CLI runs in this folder (its debug log goes there), and the state dir may be relative.
        folder = (self.state_dir / "firebase").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        argv = auth_argv(self.settings, folder, auth=p.auth, hub=p.auth_hub, logging=p.auth_logging)
        return self.spawn("auth", argv, env, p.auth, cwd=folder)

    def _start_web(self, env: dict[str, str]) -> None:
        """The web client's server, if the page is built (scripts/setup.sh builds web/dist)."""
        from scenerender.dev.webserve import web_config, write_json

        dist = web_dist(self.settings)
        if dist is None:
            return
        p = self.state.ports
        # The page signs in against the Auth emulator (connectAuthEmulator wants a URL).
        config = web_config(
            self.settings, auth_host=f"http://127.0.0.1:{p.auth}", firestore_host=f"127.0.0.1:{p.firestore}"
        )
        write_json(self.web_config_path, config)
        self.start_process(
            "web",
            [
                sys.executable,
                "-m",
                "scenerender.dev.webserve",
                "--config",
                str(self.web_config_path.resolve()),
                "--api",
                f"http://127.0.0.1:{p.function_port('api')}",
                "--port",
                str(p.web),
                "--root",
                str(dist.resolve()),
            ],
            env,
            functools.partial(port_answers, p.web),
            p.web,
        )

    def down(self) -> list[str]:
        """Stop every process group this stack started (newest first); returns their names."""
        state = self.load() or self.state
        stopped: list[str] = []
        if self.executions_dir.exists():
            from scenerender.cloud.launcher import LocalLauncher

            stopped += [f"execution task {pid}" for pid in LocalLauncher(self.executions_dir).stop_all()]
        # A group whose leader is gone is still ours while it has members: Linux does not give
        # a pid that is some group's id to a new process.
        ours = [r for r in state.processes if record_present(r) or (not pid_alive(r.pid) and group_alive(r.pid))]
        for record in reversed(ours):
            if group_alive(record.pid):
                try:
                    os.killpg(record.pid, signal.SIGTERM)
                except OSError:
                    continue
                stopped.append(record.name)
        deadline = time.monotonic() + 10
        for record in ours:
            while group_alive(record.pid) and time.monotonic() < deadline:
                reap(record.pid)
                time.sleep(0.1)
            if group_alive(record.pid):
                with contextlib.suppress(OSError):
                    os.killpg(record.pid, signal.SIGKILL)
            reap(record.pid)
        for child in self._children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self._children.clear()
        self.state_file.unlink(missing_ok=True)
        self.state.processes = []
        return stopped

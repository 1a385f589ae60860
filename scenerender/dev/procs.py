"""The processes and ports of this machine, read from /proc: free ports, whether a recorded
process is still the same one, who holds a port. What the local cloud needs to start its
pieces on ports of their own and to stop only what it started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scenerender.errors import SceneRenderError


class DevStackError(SceneRenderError):
    """A piece of the local cloud did not start (its log tail is in the message)."""


@dataclass
class ProcessRecord:
    name: str
    pid: int
    argv: list[str]
    log: str
    port: int = 0  # the port it serves on (0: none), checked to be its own by `status`
    started: int = 0  # its start time (clock ticks since boot): a reused pid is not taken for it


class PortTakenError(DevStackError):
    """A port the stack claimed free was taken by another process before its piece bound it."""

    def __init__(self, message: str, port: int) -> None:
        super().__init__(message)
        self.port = port


# Free ports are drawn from below the kernel's ephemeral range, where nothing is handed out
# unasked: in the range, any outgoing connection (the emulators' clients make hundreds) or
# another process's bind to port 0 may take a port between the check and the bind.
LOWEST_PORT = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on, below the ephemeral range when there is room there."""
    high = _ephemeral_low()
    if high - LOWEST_PORT >= 1000:
        for _ in range(100):
            port = secrets.SystemRandom().randrange(LOWEST_PORT, high)
            if port_free(port):
                return port
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


def reap(pid: int) -> None:
    # Our own children must be waited for, or they stay as zombies that look alive.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)

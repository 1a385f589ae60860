"""The ``scenerender`` console script.

Before the CLI's libraries load (pydantic, typer, rich: 0.3-0.5 s of one core), a
``render`` or ``validate --probe`` starts ffprobe on the spec's local input files, on the
core that loading leaves idle (``probe.EarlyProbes``). Nothing here decides anything: the
spec is read only for the paths to start on, and the render validates it, resolves every
input and checks every probe it takes against the file it resolved, as it would without.
Only the standard library is imported before the CLI.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from scenerender.errors import Stopped
from scenerender.inputs import is_local_path, local_file
from scenerender.probe import EarlyProbes

SPEC_READ_LIMIT = 1 << 20  # a spec larger than this is left to the CLI (its own limit applies)
EARLY_PROBE_LIMIT = 64  # a long scene's remaining inputs are probed the ordinary way
_OPTIONS_WITH_VALUE = {"-o", "--output"}  # render's and validate's options that take a value (cli.py)


def spec_argument(argv: list[str]) -> Path | None:
    """The SPEC of ``render SPEC ...`` or ``validate --probe SPEC``; None for anything else."""
    if not argv or argv[0] not in ("render", "validate"):
        return None
    if argv[0] == "validate" and "--probe" not in argv[1:]:
        return None
    rest = iter(argv[1:])
    for arg in rest:
        if arg in _OPTIONS_WITH_VALUE:
            next(rest, None)
        elif arg == "--":
            following = next(rest, None)
            return Path(following) if following else None
        elif not arg.startswith("-"):
            return Path(arg)
    return None


def local_inputs(spec_path: Path) -> list[Path]:
    """The local files a spec names, in its order (segments, then clips); [] if it cannot be read."""
    try:
        if not spec_path.is_file() or spec_path.stat().st_size > SPEC_READ_LIMIT:
            return []
        spec = json.loads(spec_path.read_bytes())
    except (OSError, ValueError):
        return []
    if not isinstance(spec, dict):
        return []
    audio = spec.get("audio")
    items = [*_as_list(spec.get("segments")), *_as_list(audio.get("clips") if isinstance(audio, dict) else None)]
    base = spec_path.resolve().parent
    paths: list[Path] = []
    for item in items:
        url = item.get("url") if isinstance(item, dict) else None
        if isinstance(url, str) and url and is_local_path(url):
            paths.append(local_file(url, base))
    return paths[:EARLY_PROBE_LIMIT]


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def start_early_probes(argv: list[str]) -> EarlyProbes | None:
    spec_path = spec_argument(argv)
    if spec_path is None:
        return None
    paths = local_inputs(spec_path)
    if not paths:
        return None
    # One core is loading Python; the others probe.
    early = EarlyProbes(os.environ.get("FFPROBE", "ffprobe"), workers=(os.cpu_count() or 2) - 1)
    for path in paths:
        early.start(path)
    return early


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP unwind the main thread as Ctrl-C does (``errors.Stopped``).

    Python's default for them is to end at once: the ffmpeg processes of a render would run
    on without it and its private dir would stay behind. A signal the caller ignores (nohup)
    stays ignored. Only the first stop raises (Ctrl-C included), so a second one cannot cut
    the cleanup short.
    """
    raised = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)

    handled = [s for s in STOP_SIGNALS if signal.getsignal(s) is signal.SIG_DFL]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        handled.append(signal.SIGINT)
    for signum in handled:
        signal.signal(signum, stop)
    if handled:
        _relay_to_main_thread(set(handled), lambda: raised)


def _relay_to_main_thread(signals: set[int], handled: Callable[[], bool]) -> None:
    """Make sure the main thread hears a stop signal another thread took.

    A signal sent to the process lands on any of its threads, but only the main thread runs
    Python's handlers, and a main thread waiting on a lock (a render waiting for its encodes)
    does not wake for a signal another thread took: the render would run to its end. Python
    writes the number of every signal it catches, on whatever thread, to the wakeup fd; this
    thread reads it and, unless the handler has run already, sends the signal once more, to
    the main thread itself.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def relay() -> None:
        relayed: set[int] = set()
        while True:
            for signum in os.read(read_fd, 64):
                # Once is enough: a signal sent to a thread is that thread's (and the one sent
                # on lands on the main thread's handler too, and is written here again).
                if signum in signals and signum not in relayed and not handled():
                    relayed.add(signum)
                    signal.pthread_kill(main_thread, signum)

    threading.Thread(target=relay, name="signal-relay", daemon=True).start()


def main() -> None:
    stop_on_signals()
    early = None
    try:
        early = start_early_probes(sys.argv[1:])
        from scenerender import cli

        # The 400 modules just loaded live as long as the process: frozen, the collector skips
        # them in every pass, the interpreter's passes at exit included (30-40 ms less at the
        # end of every command, measured).
        gc.freeze()
        cli.main(early_probes=early)
    except Stopped as stopped:  # before the CLI was there to report it
        sys.stderr.write(f"{stopped}\n")
        raise SystemExit(stopped.exit_code) from None
    finally:
        if early is not None:
            early.close()

"""The ``scenerender`` console script: stop signals first, then the CLI.

Only the standard library is imported before the handlers are in place, so a stop that
arrives while the CLI's libraries load is handled like one that arrives later.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from scenerender.errors import Stopped

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
    try:
        from scenerender.cli import app

        # The 400 modules just loaded live as long as the process: frozen, the collector skips
        # them in every pass, the interpreter's passes at exit included (30-40 ms less at the
        # end of every command, measured).
        gc.freeze()
        app.main()
    except Stopped as stopped:  # before the CLI was there to report it
        sys.stderr.write(f"{stopped}\n")
        raise SystemExit(stopped.exit_code) from None

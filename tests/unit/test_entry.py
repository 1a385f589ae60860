"""The console script's stop signals: SIGTERM/SIGHUP unwind the main thread as Ctrl-C does."""

from __future__ import annotations

import subprocess
import sys

_SIGNALS_AFTER_START = """
import signal, sys
signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
from scenerender.cli.entry import stop_on_signals
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
from scenerender.cli.entry import stop_on_signals
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

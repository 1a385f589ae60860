"""ffmpeg and ffprobe started with their libraries in the order their symbols are looked up.

Debian's ffmpeg links 215 shared libraries and is built with BIND_NOW, so every start
resolves about 42,000 symbols before ``main``. The dynamic loader looks each one up library
by library in load order (the binary's dependencies, breadth first), and the libraries most
looked up into sit deep in it (libcrypto at 165, libepoxy at 142, liblapack at 134): 89
libraries are tried per symbol on average, and those lookups are 38 % of a start. Named in
``LD_PRELOAD``, most-used first, the same libraries are searched first: a start costs about
a quarter less CPU (``ffmpeg -version``: 53-57 ms instead of 76-84, ``perf stat``), and a
render starts a dozen of them.

It only reorders: ``LD_PRELOAD`` names exactly the libraries the binary loads anyway. Where
a symbol is defined by more than one library (PulseAudio's two libraries, C++ template
instances, libm and libc), the first one searched wins, so the order keeps every library
that wins today ahead of the others that define its symbol. It is computed from the
loader's own trace (``LD_DEBUG=bindings``) and kept only if every binding lands in the very
library it lands in without it. An order is used only while the binary and each library are
the files it was computed for (size and modification time), with the same loader cache
(``/etc/ld.so.cache``, which says where each library is found), and never when the caller
set ``LD_PRELOAD`` or ``LD_LIBRARY_PATH`` itself. Without a valid order ffmpeg starts as it
always did.

    python -m scenerender.linkorder      # compute the orders of FFMPEG and FFPROBE (setup does)

Only the standard library: ``scenerender.entry`` uses it before the CLI has loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

DIR_ENV = "SCENERENDER_LINK_ORDER_DIR"  # also a field of settings.Settings, for its documentation
FORMAT = 2
LOADER_CACHE = "/etc/ld.so.cache"
# Either would change which files the loader finds: the order was computed without them.
CALLER_VARIABLES = ("LD_PRELOAD", "LD_LIBRARY_PATH")
MAX_ROUNDS = 10
TRACE_TIMEOUT_S = 60
# The loader itself is in every scope and cannot be preloaded.
_LOADER = re.compile(r"(^|/)ld-linux[^/]*\.so[.\d]*$|(^|/)ld64\.so[.\d]*$")
# "binding file A [0] to B [0]: normal symbol `name' [VERSION]"
_BINDING = re.compile(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: (\w+) symbol `([^']+)'")
Bindings = dict[tuple[str, str, str], str]  # (library looking up, symbol, kind) -> library found in


class LinkOrderError(Exception):
    """No order could be computed for this binary (not glibc, no trace, no consistent order)."""


def order_dir() -> Path:
    configured = os.environ.get(DIR_ENV, "")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "scenerender" / "link-order"


def _identity(path: str) -> list[int] | None:
    """Size and whole-second modification time: what an upgrade changes and an image layer keeps."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, int(st.st_mtime)]


def _record_path(binary: str, directory: Path) -> Path:
    return directory / f"{hashlib.sha256(binary.encode()).hexdigest()[:16]}.json"


def _trace(binary: str, what: str, preload: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env["LD_DEBUG"] = what
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    try:
        done = subprocess.run(
            [binary, "-version"], env=env, capture_output=True, text=True, timeout=TRACE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LinkOrderError(f"{binary} -version did not run: {exc}") from exc
    if done.returncode != 0:
        raise LinkOrderError(f"{binary} -version failed with exit code {done.returncode}")
    return done.stderr


def load_order(binary: str) -> list[str]:
    """The libraries ``binary`` loads, in the order the loader searches them (itself left out)."""
    for line in _trace(binary, "scopes", []).splitlines():
        _, found, scope = line.partition(" scope 0: ")
        if found:
            return [lib for lib in scope.split()[1:] if not _LOADER.search(lib)]
    raise LinkOrderError(f"the loader did not trace {binary}'s libraries (not glibc?)")


def bindings(binary: str, preload: list[str]) -> Bindings:
    """Where each symbol the start of ``binary`` looks up is found, with ``preload`` first."""
    found = {(a, symbol, kind): b for a, b, kind, symbol in _BINDING.findall(_trace(binary, "bindings", preload))}
    if not found:
        raise LinkOrderError(f"the loader did not trace {binary}'s bindings (not glibc?)")
    return found


def _order(libraries: list[str], lookups: Counter[str], after: dict[str, set[str]]) -> list[str]:
    """Most looked-up first, every library after the ones that must win over it.

    A library that must come before a much-used one is as urgent as that one: otherwise
    libm, which has to precede libc (both define ``ldexp``), would hold libc back.
    """
    rank = {lib: i for i, lib in enumerate(libraries)}
    waiting: dict[str, set[str]] = {}
    for lib, first in after.items():
        for w in first:
            waiting.setdefault(w, set()).add(lib)
    urgency: dict[str, int] = {}

    def urgent(lib: str, seen: frozenset[str] = frozenset()) -> int:
        if lib not in urgency:
            behind = [urgent(n, seen | {lib}) for n in waiting.get(lib, ()) if n not in seen]
            urgency[lib] = max([lookups[lib], *behind])
        return urgency[lib]

    remaining = set(libraries)
    order: list[str] = []
    while remaining:
        ready = [lib for lib in remaining if not after.get(lib, set()) & remaining]
        if not ready:  # cannot happen for constraints read off today's order, which meets them all
            raise LinkOrderError("the libraries' constraints contradict each other")
        pick = max(ready, key=lambda lib: (urgent(lib), lookups[lib], -rank[lib]))
        order.append(pick)
        remaining.remove(pick)
    return order


def compute(binary: str) -> list[str]:
    """The order for ``binary``: the same bindings as without one, fewer libraries searched.

    Each round checks the whole trace; a symbol that moved to another library puts the
    library it was found in before the one that took it, and the next round tries again.
    Today's load order satisfies every such constraint, so the rounds end (3 for ffmpeg).
    """
    libraries = load_order(binary)
    today = bindings(binary, [])
    lookups = Counter(today.values())
    after: dict[str, set[str]] = {}
    for _ in range(MAX_ROUNDS):
        order = _order(libraries, lookups, after)
        reordered = bindings(binary, order)
        moved = [(key, was) for key, was in today.items() if reordered.get(key) != was]
        if not moved:
            if reordered.keys() == today.keys():
                return order
            # Nothing moved, so no new constraint: every further round would trace the same order.
            raise LinkOrderError(f"{binary}: the reordered libraries bind symbols that were not bound before")
        for key, was in moved:
            now = reordered.get(key)
            if now is None:
                raise LinkOrderError(f"{binary}: {key[1]} was not found at all with the libraries reordered")
            if was not in libraries:  # the binary or the loader: nothing preloaded can go behind them
                raise LinkOrderError(f"{binary}: {key[1]} moved from {was}, which cannot be reordered")
            after.setdefault(now, set()).add(was)
    raise LinkOrderError(f"no order of {binary}'s libraries kept every binding in {MAX_ROUNDS} rounds")


def save(binary: str, order: list[str], directory: Path | None = None) -> Path:
    """Write the order of ``binary`` (a resolved path) with the identity of every file it rests on."""
    directory = directory or order_dir()
    record = {
        "format": FORMAT,
        "binary": binary,
        "identity": _identity(binary),
        "loader_cache": _identity(LOADER_CACHE),
        "libraries": [[lib, _identity(lib)] for lib in order],
    }
    directory.mkdir(parents=True, exist_ok=True)
    target = _record_path(binary, directory)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_text(json.dumps(record))
    partial.replace(target)
    _preload.cache_clear()
    return target


@lru_cache(maxsize=8)
def _preload(binary: str, directory: Path) -> str | None:
    try:
        record = json.loads(_record_path(binary, directory).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("binary") != binary:
        return None
    if record.get("identity") is None or record.get("identity") != _identity(binary):
        return None
    if record.get("loader_cache") != _identity(LOADER_CACHE):
        return None
    libraries = record.get("libraries")
    if not isinstance(libraries, list) or not libraries:
        return None
    for entry in libraries:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            return None
        if entry[1] is None or _identity(entry[0]) != entry[1] or ":" in entry[0] or " " in entry[0]:
            return None
    return ":".join(entry[0] for entry in libraries)


def resolve(binary: str) -> str | None:
    found = shutil.which(binary)
    return os.path.realpath(found) if found else None


def environment(binary: str) -> dict[str, str] | None:
    """The environment to start ``binary`` in: ours with its order preloaded, or None (ours as it is)."""
    if any(name in os.environ for name in CALLER_VARIABLES):
        return None
    resolved = resolve(binary)
    preload = _preload(resolved, order_dir()) if resolved else None
    if preload is None:
        return None
    return {**os.environ, "LD_PRELOAD": preload}


def main(argv: list[str]) -> int:
    binaries = argv or [os.environ.get("FFMPEG", "ffmpeg"), os.environ.get("FFPROBE", "ffprobe")]
    directory = order_dir()
    for name in binaries:
        resolved = resolve(name)
        if resolved is None:
            print(f"{name}: not found; it starts without an order", file=sys.stderr)
            continue
        if _preload(resolved, directory) is not None:
            print(f"{resolved}: order up to date in {directory}")
            continue
        started = time.monotonic()
        try:
            order = compute(resolved)
        except LinkOrderError as exc:
            print(f"{resolved}: no order ({exc}); it starts without one", file=sys.stderr)
            continue
        target = save(resolved, order, directory)
        print(f"{resolved}: {len(order)} libraries ordered in {time.monotonic() - started:.1f} s -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

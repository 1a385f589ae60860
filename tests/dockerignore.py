"""The build context Docker sends for a directory and its ``.dockerignore``, computed as Docker does.

No Docker engine runs here, so this is a port of the code Docker itself uses:
``github.com/moby/patternmatcher`` (``ignorefile.ReadAll`` reads the file,
``PatternMatcher.MatchesOrParentMatches`` decides each path) and the walk of
``github.com/tonistiigi/fsutil`` that BuildKit sends the context with. In short:

- a line starting with ``#`` is a comment (only at its very start); blank lines are skipped;
  each pattern is trimmed, ``filepath.Clean``-ed and loses a leading ``/``;
- ``*`` is any run of characters but ``/``, ``?`` one such character, ``[...]`` a class,
  ``\\`` escapes, ``**`` any number of whole directories (zero included);
- a pattern matches a path when it matches the path itself or any of its parent directories
  (``tests`` leaves out ``tests/unit/x.py``), and it is matched against the whole path from
  the context's root (``*.pyc`` is the root's only; ``**/*.pyc`` everywhere);
- patterns apply in order and the last one that matches decides: ``!pattern`` lets back in.

Unlike ``fnmatch``, ``*`` does not cross ``/``, a pattern is anchored at the root, and an
excluded directory takes everything in it, unless a later ``!`` line names something inside.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

_REGEXP_SPECIALS = set(".+()|{}$")


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the leading "!"
    exclusion: bool  # a "!" line: lets back in
    kind: str  # exact, prefix, suffix or regexp: how patternmatcher matches it
    regexp: re.Pattern[str]

    def match(self, path: str) -> bool:
        # The same shortcuts patternmatcher takes (their edge cases included: "**foo" as a
        # suffix matches "barfoo"), else its regular expression.
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])  # "dir/**"
        if self.kind == "suffix":
            suffix = self.text[2:]  # "**/name" or "**name"
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        return self.regexp.match(path) is not None


def _go_clean(path: str) -> str:
    """Go's filepath.Clean on a slash path (posixpath.normpath, but "//x" is "/x" too)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def compile_pattern(line: str) -> Pattern:
    exclusion = line.startswith("!")
    text = line[1:] if exclusion else line
    if exclusion and not text:
        raise ValueError('illegal exclusion pattern: "!"')
    regexp = "^"
    kind = "exact"
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "*":
            if i + 1 < len(text) and text[i + 1] == "*":
                start = i
                i += 2
                if i < len(text) and text[i] == "/":  # "**/" is "**"
                    i += 1
                if i == len(text):  # "**" at the end: everything below
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regexp += ".*"
                        kind = "regexp"
                else:
                    regexp += "(.*/)?"
                    kind = "regexp"
                if start == 0:
                    kind = "suffix"
                continue
            regexp += "[^/]*"
            kind = "regexp"
        elif ch == "?":
            regexp += "[^/]"
            kind = "regexp"
        elif ch in _REGEXP_SPECIALS:
            regexp += "\\" + ch
        elif ch == "\\":
            if i + 1 < len(text):
                i += 1
                regexp += "\\" + text[i]
                kind = "regexp"
            else:
                regexp += "\\\\"
        elif ch in "[]":
            regexp += ch
            kind = "regexp"
        else:
            regexp += ch
        i += 1
    return Pattern(text, exclusion, kind, re.compile(regexp + "$", re.S))


def read_patterns(text: str) -> list[Pattern]:
    """ignorefile.ReadAll, then NewPatternMatcher: the patterns of a .dockerignore, in order."""
    patterns: list[Pattern] = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if number == 0 else raw
        if line.startswith("#"):  # a comment only at the very start of the line
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = _go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append(compile_pattern(("!" if invert else "") + line))
    return patterns


def excluded(path: str, patterns: list[Pattern]) -> bool:
    """PatternMatcher.MatchesOrParentMatches: whether a context-relative slash path is left out."""
    matched = False
    parent = posixpath.dirname(path) or "."
    parents = parent.split("/")
    for pattern in patterns:
        # An inclusion cannot change a path already left out, nor an exclusion one kept.
        if pattern.exclusion != matched:
            continue
        hit = pattern.match(path)
        if not hit and parent != ".":
            hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
        if hit:
            matched = not pattern.exclusion
    return matched


def build_context(root: Path) -> set[str]:
    """Every file Docker would send for ``root`` (slash paths relative to it), as BuildKit walks it.

    Like fsutil, a left-out directory is not entered when no ``!`` line could let anything in
    it back (none has a wildcard, and none starts with the directory's path); otherwise it is
    walked and each file decided on its own. Links are sent as links: listed, not followed.
    """
    ignore = root / ".dockerignore"
    patterns = read_patterns(ignore.read_text()) if ignore.exists() else []
    exceptions = [p.text for p in patterns if p.exclusion]
    prunable = not any(set(p) & set("*?[\\") for p in exceptions)
    files: set[str] = set()
    for current, dirs, names in os.walk(root):
        base = Path(current).relative_to(root).as_posix()
        keep: list[str] = []
        for name in sorted(dirs):
            rel = name if base == "." else f"{base}/{name}"
            if excluded(rel, patterns) and prunable and not any((p + "/").startswith(rel + "/") for p in exceptions):
                continue
            if (Path(current) / name).is_symlink():
                if not excluded(rel, patterns):
                    files.add(rel)
                continue
            keep.append(name)
        dirs[:] = keep
        for name in names:
            rel = name if base == "." else f"{base}/{name}"
            if not excluded(rel, patterns):
                files.add(rel)
    return files

"""The order itself, on made-up libraries: most looked-up first, constraints kept."""

from __future__ import annotations

from collections import Counter

import pytest

from scenerender.linkorder import LinkOrderError, _order


def test_most_looked_up_libraries_come_first_in_load_order_among_equals() -> None:
    libraries = ["liba", "libb", "libc", "libd"]
    lookups = Counter({"libc": 50, "libd": 20, "liba": 5, "libb": 5})
    assert _order(libraries, lookups, {}) == ["libc", "libd", "liba", "libb"]


def test_a_library_that_must_win_over_a_much_used_one_goes_before_it_early() -> None:
    # libm defines symbols libc defines too (ldexp), and wins them today: libc must stay
    # behind libm, and libm is then as urgent as libc, ahead of the middling libepoxy.
    libraries = ["libm", "libc", "libepoxy", "libx"]
    lookups = Counter({"libc": 6800, "libepoxy": 3600, "libm": 500, "libx": 10})
    order = _order(libraries, lookups, {"libc": {"libm"}})
    assert order == ["libm", "libc", "libepoxy", "libx"]


def test_constraints_that_contradict_each_other_are_refused() -> None:
    with pytest.raises(LinkOrderError):
        _order(["liba", "libb"], Counter(), {"liba": {"libb"}, "libb": {"liba"}})

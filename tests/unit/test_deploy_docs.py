"""docs/deploy.md points at things that exist, and its cost table is the arithmetic it states.

Every backticked path, test name and Terraform address in the document must exist, so a
renamed test or resource cannot leave a claim pointing nowhere; every variable is in its
table; the cost of a rendered minute is recomputed from the benchmark's table in
docs/performance.md, the prices and the renderer's defaults (terraform/variables.tf).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.test_terraform import instance_keys, parsed, resources, variables

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text()
TICKED = set(re.findall(r"`([^`\n]+)`", DOC))


def test_every_path_named_exists() -> None:
    paths = {t for t in TICKED if re.fullmatch(r"[\w.-]+(/[\w.-]+)*/?", t) and ("/" in t or "." in t)}
    paths = {p for p in paths if re.search(r"\.(py|tf|md|sh|yaml|txt|lock|rules|hcl)$", p) or p.startswith(".")}
    assert len(paths) > 15, paths
    names = {f.name for f in ROOT.rglob("*") if not any(part.startswith(".venv") for part in f.parts)}

    def exists(path: str) -> bool:
        return (ROOT / path).exists() if "/" in path else path in names

    missing = sorted(p for p in paths if not exists(p))
    # The lock file is written by the first terraform init in the cloud (explained there).
    assert missing == ["terraform/.terraform.lock.hcl"], missing


def test_every_test_named_exists() -> None:
    names = {t for t in TICKED if re.fullmatch(r"test_\w+", t)}
    assert len(names) > 10, names
    source = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    defined = set(re.findall(r"^def (test_\w+)\(", source, re.M))
    assert not names - defined, names - defined


def test_every_terraform_address_named_exists() -> None:
    addresses = {t for t in TICKED if re.fullmatch(r'(google|time)_\w+\.\w+(\["\w+"\])?', t)}
    assert len(addresses) > 8, addresses
    for address in addresses:
        kind, name, key = re.fullmatch(r'(\w+)\.(\w+)(?:\["(\w+)"\])?', address).groups()  # type: ignore[union-attr]
        assert name in resources().get(kind, {}), address
        if key is not None:  # an instance of a for_each
            assert key in instance_keys(resources()[kind][name]["for_each"]), address
    locals_named = {t.removeprefix("local.") for t in TICKED if t.startswith("local.")}
    declared = {k for tree in parsed().values() for e in tree.get("locals", []) for k in e}
    assert locals_named and locals_named <= declared, locals_named - declared


def test_the_variables_table_lists_every_variable() -> None:
    table = DOC.split("### Variables", 1)[1].split("###", 1)[0]
    listed = set()
    for row in re.findall(r"^\| (.+?) \|", table, re.M):
        listed |= set(re.findall(r"`(\w+)`", row))
    assert set(variables()) <= listed, set(variables()) - listed


PRICES = re.search(r"vCPU-second\s+([\d.]+) USD\s+GiB-second\s+([\d.]+) USD\s+cores busy ([\d.]+)", DOC)
ROWS = [
    # (the performance table's row, the doc's row label start, scene seconds)
    ("render, matching (copied)", "matching segments, copied", 50),
    ("render, scale", "500 s of matching segments", 500),
    ("render, normalising", "720p25 segments normalised", 50),
    ("render, long segments", "three 20 s segments", 60),
]


@pytest.mark.parametrize(("bench", "label", "scene_s"), ROWS)
def test_the_cost_table_is_the_benchmark_times_the_price(bench: str, label: str, scene_s: int) -> None:
    assert PRICES, "the price block is gone"
    cpu_price, mem_price, busy = (float(x) for x in PRICES.groups())
    renderer = variables()["renderer"]["type"]
    vcpu = int(re.search(r'cpu\s*=\s*optional\(string,\s*"(\d+)"\)', str(renderer))[1])  # type: ignore[index]
    gib = int(re.search(r'memory\s*=\s*optional\(string,\s*"(\d+)Gi"\)', str(renderer))[1])  # type: ignore[index]
    idle = int(re.search(r"idle_exit_s\s*=\s*optional\(number,\s*(\d+)\)", str(renderer))[1])  # type: ignore[index]
    assert f"{vcpu} vCPU, {gib} GiB" in DOC and f"idle_exit_s {idle} s" in DOC

    perf = (ROOT / "docs" / "performance.md").read_text()
    row = next(line for line in perf.splitlines() if line.startswith(f"| {bench} |"))
    ours = [c.strip() for c in row.strip("|").split("|")][2]  # "26.29 s, 50.34 CPU-s"
    cpu_s = float(re.search(r"([\d.]+) CPU-s", ours)[1])  # type: ignore[index]
    per_minute = cpu_s / scene_s * 60
    billed = per_minute / busy
    usd = billed * cpu_price + billed / vcpu * gib * mem_price

    doc_row = next(line for line in DOC.splitlines() if line.startswith(f"| {label}"))
    cells = [c.strip() for c in doc_row.strip("|").split("|")]
    assert f"{cpu_s:.2f} CPU-s" in cells[0], (cells[0], cpu_s)
    assert float(cells[1]) == pytest.approx(per_minute, abs=0.051)
    assert float(cells[2]) == pytest.approx(billed, abs=0.051)
    assert float(cells[3]) == pytest.approx(usd, abs=0.000005)

    per_execution = idle * (vcpu * cpu_price + gib * mem_price)
    assert f"**{per_execution:.5f} USD**" in DOC


def test_every_promise_of_the_issue_names_what_keeps_it() -> None:
    """The map of issue 22's bullets: each row names a test, a file or a Terraform address
    (which the tests above prove exist), or says it is shown by the documentation alone."""
    table = DOC.split("### What makes each promise of issue 22 true", 1)[1].split("###", 1)[0]
    rows = [r for r in re.findall(r"^\| (.+) \| (.+) \|$", table, re.M) if r[0] not in ("promise", "---")]
    assert len(rows) >= 25, len(rows)
    thing = re.compile(r"test_\w+|[\w./-]+\.\w+|(google|time|data)_?[\w.]+(\[\"\w+\"\])?")
    for promise, kept_by in rows:
        named = re.findall(r"`([^`]+)`", kept_by)
        assert any(thing.fullmatch(n) for n in named) or "docs only" in kept_by, promise
    assert "### Verified only by reading the documentation" in DOC

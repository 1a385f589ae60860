"""Terraform provider schemas read from the prebuilt CDKTF bindings on PyPI.

Providers cannot be downloaded on these machines, so ``terraform providers schema`` cannot
run. Each ``cdktf-cdktf-provider-*`` wheel (pinned in requirements-tfschema.txt, installed
by scripts/setup.sh into .venv with --no-deps) carries its provider's schema as a jsii assembly
(``_jsii/*.jsii.tgz`` → ``package/.jsii``, JSON): one class per resource and data source
whose docs name the Terraform type and the provider version it was generated from, and one
struct per block whose properties link to the argument's Terraform name
(``...#create_duration Sleep#create_duration``). This module turns that into::

    {"provider": "google", "version": "6.50.0",
     "resources": {type: Block}, "data": {type: Block}, "config": Block,
     "exports": {"resources": {type: [attribute, ...]}, "data": {...}}}
    Block = {"attributes": [name, ...], "blocks": {name: Block},
             "required": [name, ...], "single": [block name, ...]}

``required`` are the arguments and blocks the provider demands (not ``optional`` in the
assembly); ``single`` the blocks it allows at most once (typed as the struct, not a list).

``exports`` are the attributes an expression may read from a resource (``.email``,
``.output_sha256``): the class's instance properties, arguments and computed ones alike.

The google assembly is ~100 MB of JSON (15 s to load), so the derived schema is cached
beside it, keyed by the archive's size and mtime.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]

_REPRESENTS = re.compile(
    r"Represents a \{@link https://registry\.terraform\.io/providers/hashicorp/([\w-]+)/([\d.]+)/docs"
    r"(?:/(resources|data-sources)/(\w+))? (\w[\w-]*)\}"
)
_ANCHOR = re.compile(r"Docs at Terraform Registry: \{@link \S+#(\w+) ")

Block = dict[str, Any]
# Bumped when derive() changes what it writes, so an old cache is not read.
FORMAT = 3


class SchemaMissing(RuntimeError):
    """The provider's CDKTF wheel is not installed anywhere this module looks."""


def _site_packages() -> list[Path]:
    return [Path(p) for p in sys.path if p]


def assembly_archive(package: str) -> Path:
    """The jsii archive of ``cdktf-cdktf-provider-<package>`` (``google_beta`` for google-beta)."""
    for base in _site_packages():
        hits = sorted((base / f"cdktf_cdktf_provider_{package}" / "_jsii").glob("*.jsii.tgz"))
        if hits:
            return hits[-1]
    raise SchemaMissing(
        f"cdktf-cdktf-provider-{package.replace('_', '-')} is not installed: run scripts/setup.sh "
        "(or pip install --no-deps -r requirements-tfschema.txt)"
    )


def _property_name(prop: dict[str, Any]) -> str:
    found = _ANCHOR.search(prop.get("docs", {}).get("remarks", ""))
    return found[1] if found else re.sub(r"(?<!^)([A-Z])", r"_\1", prop["name"]).lower()


def _struct_of(kind: dict[str, Any], types: dict[str, Any]) -> str | None:
    """The struct fqn a property's type is a block of, or None for a plain attribute."""
    if "fqn" in kind:
        target = types.get(kind["fqn"])
        return kind["fqn"] if target and target.get("datatype") else None
    if "union" in kind:
        for option in kind["union"]["types"]:
            element = option.get("collection", {}).get("elementtype", {})
            if option.get("collection", {}).get("kind") == "array" and _struct_of(element, types):
                return str(element["fqn"])
            if _struct_of(option, types):
                return str(option["fqn"])
    return None


def _block(fqn: str, types: dict[str, Any], seen: tuple[str, ...] = ()) -> Block:
    attributes: list[str] = []
    blocks: dict[str, Block] = {}
    required: list[str] = []
    single: list[str] = []
    if fqn in seen:  # a recursive schema (none in these providers so far): stop, keep it open
        return {"attributes": [], "blocks": {}, "required": [], "single": [], "recursive": True}
    for prop in types[fqn].get("properties", []):
        name = _property_name(prop)
        struct = _struct_of(prop["type"], types)
        if struct:
            blocks[name] = _block(struct, types, (*seen, fqn))
            # A block of at most one (max_items = 1) is typed as the struct itself; a list
            # block as an array of it (or IResolvable).
            if "fqn" in prop["type"]:
                single.append(name)
        else:
            attributes.append(name)
        if not prop.get("optional"):  # required arguments and blocks (min_items >= 1)
            required.append(name)
    return {"attributes": sorted(attributes), "blocks": blocks, "required": sorted(required), "single": sorted(single)}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _exports(kind: dict[str, Any]) -> list[str]:
    names = {
        _snake(p["name"]) for p in kind.get("properties", []) if not p.get("static") and not p["name"].endswith("Input")
    }
    return sorted(names)


def derive(assembly: dict[str, Any]) -> dict[str, Any]:
    """The schema of every resource, data source and the provider block in one assembly."""
    types: dict[str, Any] = assembly["types"]
    out: dict[str, Any] = {
        "resources": {},
        "data": {},
        "config": None,
        "provider": None,
        "version": None,
        "exports": {"resources": {}, "data": {}},
    }
    for kind in types.values():
        if kind.get("kind") != "class":
            continue
        found = _REPRESENTS.search(kind.get("docs", {}).get("summary", ""))
        if not found:
            continue
        provider, version, section, _doc_name, tf_name = found.groups()
        params = kind.get("initializer", {}).get("parameters", [])
        config = next((p["type"]["fqn"] for p in params if p["name"] == "config"), None)
        if config is None:
            continue
        block = _block(config, types)
        if section is None:
            out.update(provider=provider, version=version, config=block)
        else:
            where = "resources" if section == "resources" else "data"
            out[where][tf_name] = block
            out["exports"][where][tf_name] = _exports(kind)
    assert out["provider"], "no provider class in the assembly"
    return out


@cache
def provider_schema(package: str) -> dict[str, Any]:
    """The derived schema of one provider package, from the cache when it is current."""
    archive = assembly_archive(package)
    stat = archive.stat()
    cache_file = archive.parent / f".scenerender-schema-v{FORMAT}-{stat.st_size}-{int(stat.st_mtime)}.json"
    try:
        cached: dict[str, Any] = json.loads(cache_file.read_text())
        return cached
    except (OSError, ValueError):
        pass
    with tarfile.open(archive) as tar:
        member = tar.extractfile("package/.jsii")
        assert member is not None, f"{archive}: no package/.jsii"
        schema = derive(json.load(member))
    tmp = cache_file.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(schema))
        tmp.replace(cache_file)
    except OSError:
        pass  # a read-only site-packages: derive again next time
    return schema


def satisfies(version: str, constraints: str) -> bool:
    """Whether ``version`` meets a Terraform version constraint string (``>= 6.0, < 8.0``)."""

    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split("."))

    have = parts(version)
    for clause in constraints.split(","):
        op, want_text = re.fullmatch(r"\s*(>=|<=|!=|~>|>|<|=)?\s*([\d.]+)\s*", clause).groups()  # type: ignore[union-attr]
        want = parts(want_text)
        width = max(len(have), len(want))
        a = have + (0,) * (width - len(have))
        b = want + (0,) * (width - len(want))
        ok = {
            None: a == b,
            "=": a == b,
            "!=": a != b,
            ">": a > b,
            ">=": a >= b,
            "<": a < b,
            "<=": a <= b,
            # ~> 6.1 allows 6.x >= 6.1; ~> 6.1.2 allows 6.1.x >= 6.1.2.
            "~>": a >= b and have[: len(want) - 1] == want[: len(want) - 1],
        }[op]
        if not ok:
            return False
    return True

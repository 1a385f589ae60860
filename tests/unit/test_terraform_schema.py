"""Every resource, data source, argument and block in terraform/*.tf exists in its provider's schema.

No provider can be downloaded here, so there is no ``terraform validate``. The schemas come
from the prebuilt CDKTF bindings pinned in requirements-tfschema.txt (tests/tfschema.py reads
them), and the HCL from python-hcl2, which marks what was written as a block. So a misspelt
argument, an argument of the wrong block, a block written as ``name = {...}`` or an
attribute written as a block, and a resource type the provider does not have all fail here;
a missing required argument or block, and a block the provider allows once written twice
also fail; values (an enum's spelling, a reference's target) are not checked.
"""

from __future__ import annotations

import io
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests import tfschema

ROOT = Path(__file__).parents[2]
TERRAFORM = ROOT / "terraform"

# Terraform's local provider names → the CDKTF package that carries each one's schema.
PACKAGES = {"google": "google", "google-beta": "google_beta", "time": "time", "archive": "archive"}
META = {"count", "for_each", "depends_on", "provider", "lifecycle"}
LIFECYCLE = {
    "create_before_destroy",
    "prevent_destroy",
    "ignore_changes",
    "replace_triggered_by",
    "precondition",
    "postcondition",
}
DYNAMIC = {"for_each", "iterator", "labels", "content"}


def unquote(label: str) -> str:
    return label[1:-1] if len(label) >= 2 and label[0] == label[-1] == '"' else label


def is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def check_body(body: dict[str, Any], schema: dict[str, Any], where: str, *, top: bool) -> list[str]:
    """Problems of one block body against its schema block, recursively."""
    problems: list[str] = []
    for key, value in body.items():
        if key.startswith("__"):  # python-hcl2's bookkeeping (__is_block__, __comments__, ...)
            continue
        at = f"{where}.{key}"
        if top and key in META:
            if key == "lifecycle":
                for entry in value:
                    unknown = {k for k in entry if not k.startswith("__")} - LIFECYCLE
                    problems += [f"{at}: unknown lifecycle argument {name}" for name in sorted(unknown)]
            continue
        if key == "dynamic":
            for entry in value:
                for label, dynamic in entry.items():
                    if label.startswith("__"):
                        continue
                    name = unquote(label)
                    if name not in schema["blocks"]:
                        problems.append(f"{at} {name}: no such block")
                        continue
                    unknown = {k for k in dynamic if not k.startswith("__")} - DYNAMIC
                    problems += [f"{at} {name}: {u} is not a dynamic block argument" for u in sorted(unknown)]
                    for content in dynamic.get("content", []):
                        problems += check_body(content, schema["blocks"][name], f"{at} {name}.content", top=False)
            continue
        if key in schema["blocks"]:
            if not is_block(value):
                problems.append(f"{at}: a block, written as an attribute")
                continue
            if key in schema.get("single", []) and len(value) > 1:
                problems.append(f"{at}: written {len(value)} times, the provider allows one")
            for entry in value:
                problems += check_body(entry, schema["blocks"][key], at, top=False)
        elif key in schema["attributes"]:
            if is_block(value):
                problems.append(f"{at}: an attribute, written as a block")
        else:
            problems.append(f"{at}: no such argument or block")
    given = {k for k in body if not k.startswith("__")}
    for entry in body.get("dynamic", []):
        given |= {unquote(label) for label in entry if not label.startswith("__")}
    problems += [f"{where}: missing required {name}" for name in schema.get("required", []) if name not in given]
    return problems


def provider_of(kind: str, body: dict[str, Any]) -> str:
    explicit = body.get("provider")
    if explicit:
        return re.sub(r"^\$\{(.*)\}$", r"\1", str(explicit)).split(".")[0]
    return kind.split("_", 1)[0]


def check_tree(tree: dict[str, Any], schema_of: Any) -> list[str]:
    """Problems of one parsed file: its resources, data sources and provider blocks."""
    problems: list[str] = []
    for section, index in (("resource", "resources"), ("data", "data")):
        for entry in tree.get(section, []):
            for kind_label, named in entry.items():
                kind = unquote(kind_label)
                if kind.startswith("__"):
                    continue
                for name_label, body in named.items():
                    if name_label.startswith("__"):
                        continue
                    where = f"{section}.{kind}.{unquote(name_label)}"
                    provider = provider_of(kind, body)
                    if provider not in PACKAGES:
                        problems.append(f"{where}: provider {provider} has no schema package here")
                        continue
                    types = schema_of(PACKAGES[provider])[index]
                    if kind not in types:
                        problems.append(f"{where}: {provider} has no {section} type {kind}")
                        continue
                    problems += check_body(body, types[kind], where, top=True)
    for entry in tree.get("provider", []):
        for label, body in entry.items():
            name = unquote(label)
            if name.startswith("__"):
                continue
            if name not in PACKAGES:
                problems.append(f"provider.{name}: no schema package")
                continue
            config = schema_of(PACKAGES[name])["config"]
            problems += check_body(
                {k: v for k, v in body.items() if k != "alias"}, config, f"provider.{name}", top=False
            )
    return problems


REFERENCE = re.compile(
    r"(?<![\w.-])(data\.)?([a-z][a-z0-9]*_[a-z0-9_]+)\.([a-z_][a-z0-9_-]*)(\[[^\]]*\])?(?:\.([a-z_][a-z0-9_]*))?"
)


def check_references(all_trees: list[dict[str, Any]], schema_of: Any) -> list[str]:
    """Problems of the expressions' references: to a resource nobody declared, or an attribute
    the resource type does not have (``google_service_account.x.emial``)."""
    declared: dict[tuple[str, str, str], str] = {}
    for tree in all_trees:
        for section, index in (("resource", "resources"), ("data", "data")):
            for entry in tree.get(section, []):
                for kind_label, named in entry.items():
                    for name_label, body in named.items():
                        if not name_label.startswith("__"):
                            kind = unquote(kind_label)
                            declared[(index, kind, unquote(name_label))] = provider_of(kind, body)
    known = {
        (index, kind)
        for package in PACKAGES.values()
        for index in ("resources", "data")
        for kind in schema_of(package)[index]
    }
    problems: list[str] = []
    for tree in all_trees:
        text = json.dumps({k: v for k, v in tree.items() if k in ("resource", "data", "output", "locals")})
        for is_data, kind, name, _index, attribute in REFERENCE.findall(text):
            index = "data" if is_data else "resources"
            if (index, kind) not in known:
                continue
            address = f"{'data.' if is_data else ''}{kind}.{name}"
            if (index, kind, name) not in declared:
                problems.append(f"{address}: referenced, never declared")
                continue
            exports = schema_of(PACKAGES[declared[(index, kind, name)]])["exports"][index][kind]
            if attribute and attribute not in exports:
                problems.append(f"{address}.{attribute}: {kind} has no attribute {attribute}")
    return sorted(set(problems))


@cache
def trees() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as fh:
            out[path.name] = hcl2.load(fh)
    return out


def schema(package: str) -> dict[str, Any]:
    try:
        return tfschema.provider_schema(package)
    except tfschema.SchemaMissing as exc:
        pytest.fail(str(exc))


def test_every_type_argument_and_block_exists_in_the_provider_schemas() -> None:
    problems = [p for name, tree in trees().items() for p in check_tree(tree, schema) if p]
    assert not problems, "\n".join(problems)
    # The check saw the whole configuration, not an empty parse.
    kinds = {unquote(k) for tree in trees().values() for e in tree.get("resource", []) for k in e}
    assert {"google_cloud_run_v2_job", "google_cloudfunctions2_function", "time_sleep"} <= kinds


def test_every_reference_names_a_declared_resource_and_an_attribute_it_has() -> None:
    problems = check_references(list(trees().values()), schema)
    assert not problems, "\n".join(problems)
    # It read the configuration's references, not nothing (192 of them today).
    seen = [m for tree in trees().values() for m in REFERENCE.findall(json.dumps(tree)) if m[1].startswith("google_")]
    assert len(seen) > 100, len(seen)


def test_the_reference_check_finds_what_it_is_for() -> None:
    wrong = """
    resource "google_service_account" "a" { account_id = "a" }
    data "google_project" "p" {}
    resource "google_storage_bucket_iam_member" "m" {
      bucket = google_storage_bucket.missing.name
      role   = "roles/storage.objectViewer"
      member = google_service_account.a.memberz
    }
    output "o" {
      value = [google_service_account.a.email, data.google_project.p.numbr, data.google_project.p.number]
    }
    """
    assert check_references([hcl2.load(io.StringIO(wrong))], schema) == [
        "data.google_project.p.numbr: google_project has no attribute numbr",
        "google_service_account.a.memberz: google_service_account has no attribute memberz",
        "google_storage_bucket.missing: referenced, never declared",
    ]


def test_the_schema_versions_satisfy_versions_tf() -> None:
    terraform = trees()["versions.tf"]["terraform"][0]
    required = {k: v for e in terraform["required_providers"] for k, v in e.items() if not k.startswith("__")}
    used = set()
    for tree in trees().values():
        for section in ("resource", "data"):
            for entry in tree.get(section, []):
                for kind_label, named in entry.items():
                    used |= {provider_of(unquote(kind_label), body) for body in named.values()}
    assert used <= set(required), used - set(required)
    for name, spec in required.items():
        found = schema(PACKAGES[name])
        assert unquote(spec["source"]) == f"hashicorp/{found['provider']}", (name, spec["source"])
        constraint = unquote(spec["version"])
        assert tfschema.satisfies(found["version"], constraint), (name, found["version"], constraint)


def test_the_checker_finds_what_it_is_for() -> None:
    """A checker that passes everything would pass the real files too: feed it each mistake."""
    wrong = """
    resource "google_storage_bucket" "a" {
      name     = "x"
      locaton  = "EU"
      versioning = { enabled = true }
      lifecycle_rule {
        condition { age = 3 }
        action { type = "Delete" }
      }
      lifecycle {
        create_before_destroy = true
        prevent_destroyed     = true
      }
    }
    resource "google_storage_bucket" "b" {
      name = "y"
      location = "EU"
      website { main_page_suffix = "a" }
      public_access_prevention { enforced = true }
      dynamic "cors" {
        for_each = [1]
        content { origins = ["https://a"] }
      }
    }
    resource "google_cloud_run_v2_job" "j" {
      name = "j"
      location = "r"
      template {
        template {
          containers {
            image = "i"
            env   = { name = "A" }
          }
        }
        timeout = "1s"
      }
    }
    resource "google_made_up_thing" "m" {}
    resource "google_project_service_identity" "beta_without_provider" { service = "x" }
    resource "google_project_service_identity" "beta" {
      provider = google-beta
      service  = "x"
    }
    resource "time_sleep" "t" { create_duraton = "1s" }
    provider "google" { projct = "p" }
    resource "google_storage_bucket" "c" {
      name     = "z"
      location = "EU"
      versioning { enabled = true }
      versioning { enabled = false }
      lifecycle_rule {
        condition { age = 3 }
      }
    }
    resource "google_service_account" "no_id" { display_name = "x" }
    """
    problems = check_tree(hcl2.load(io.StringIO(wrong)), schema)
    expected = [
        "resource.google_storage_bucket.a.locaton: no such argument or block",
        "resource.google_storage_bucket.a.versioning: a block, written as an attribute",
        "resource.google_storage_bucket.a.lifecycle: unknown lifecycle argument prevent_destroyed",
        "resource.google_storage_bucket.b.public_access_prevention: an attribute, written as a block",
        "resource.google_storage_bucket.b.dynamic cors.content.origins: no such argument or block",
        "resource.google_cloud_run_v2_job.j.template.template.containers.env: a block, written as an attribute",
        "resource.google_cloud_run_v2_job.j.template.timeout: no such argument or block",
        "resource.google_made_up_thing.m: google has no resource type google_made_up_thing",
        "resource.google_project_service_identity.beta_without_provider: google has no resource type "
        "google_project_service_identity",
        "resource.time_sleep.t.create_duraton: no such argument or block",
        "provider.google.projct: no such argument or block",
        "resource.google_storage_bucket.a: missing required location",
        "resource.google_storage_bucket.c.versioning: written 2 times, the provider allows one",
        "resource.google_storage_bucket.c.lifecycle_rule: missing required action",
        "resource.google_service_account.no_id: missing required account_id",
    ]
    assert sorted(problems) == sorted(expected)


def test_version_constraints_are_read_as_terraform_reads_them() -> None:
    assert tfschema.satisfies("6.50.0", ">= 6.0, < 8.0")
    assert not tfschema.satisfies("8.0.0", ">= 6.0, < 8.0")
    assert tfschema.satisfies("6.50.0", "~> 6.0")
    assert not tfschema.satisfies("7.0.0", "~> 6.0")
    assert tfschema.satisfies("6.50.3", "~> 6.50.0")
    assert not tfschema.satisfies("6.51.0", "~> 6.50.0")
    assert tfschema.satisfies("0.13.1", ">= 0.9, < 1.0")
    assert not tfschema.satisfies("2.7.1", "!= 2.7.1")


def test_the_checker_sees_the_whole_configuration() -> None:
    """No file or kind of block is passed over: a module directory, or a block kind the checker
    does not read (module, moved, import, check), fails here until the checker learns it."""
    nested = sorted(
        p.relative_to(TERRAFORM).as_posix()
        for p in TERRAFORM.rglob("*.tf")
        if p.parent != TERRAFORM and ".terraform" not in p.parts
    )
    assert not nested, f"HCL below terraform/ is not schema-checked yet: {nested}"
    kinds = {k for tree in trees().values() for k in tree if not k.startswith("__")}
    assert kinds <= {"resource", "data", "provider", "terraform", "variable", "output", "locals"}, kinds
    assert {"resource", "data", "provider", "terraform", "variable", "output", "locals"} <= kinds

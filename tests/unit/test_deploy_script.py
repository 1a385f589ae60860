"""scripts/deploy.sh: the commands it makes, their order, and that a second run changes nothing.

There is no cloud here: ``--dry-run`` prints the commands of a run on a fresh project, and
for the idempotence check ``gcloud`` and ``terraform`` are stand-ins on PATH that record
their arguments and report that everything already exists.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_terraform import block, locals_, resources

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "scripts" / "deploy.sh"
PROJECT, REGION = "film-app-123", "europe-west4"


def dry_run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> list[list[str]]:
    done = subprocess.run(
        ["bash", str(cwd / "scripts" / "deploy.sh"), "--dry-run", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.splitlines() if line.strip()]


def index(commands: list[list[str]], *words: str, start: int = 0) -> int:
    """The first command at or after ``start`` that has every word, in order of the words."""
    for i, cmd in enumerate(commands[start:], start):
        if all(w in cmd for w in words):
            return i
    raise AssertionError(f"no command with {words}:\n" + "\n".join(shlex.join(c) for c in commands))


def test_deploy_bootstraps_state_and_repository_before_the_image_and_applies_last() -> None:
    cmds = dry_run(PROJECT, REGION, "--", "-var-file=prod.tfvars")
    enable = index(cmds, "gcloud", "services", "enable", "cloudresourcemanager.googleapis.com")
    state = index(cmds, "gcloud", "storage", "buckets", "create", f"gs://{PROJECT}-tfstate")
    versioning = index(cmds, "gcloud", "storage", "buckets", "update", f"gs://{PROJECT}-tfstate", "--versioning")
    init = index(cmds, "terraform", "init", f"-backend-config=bucket={PROJECT}-tfstate")
    bootstrap = index(cmds, "terraform", "apply", '-target=google_artifact_registry_repository.docker["images"]')
    build = index(cmds, "gcloud", "builds", "submit")
    apply = index(cmds, "terraform", "apply", start=bootstrap + 1)
    url = index(cmds, "terraform", "output", "-raw", "http_api_url")
    buckets = index(cmds, "terraform", "output", "-json", "buckets")
    assert enable < state < versioning < init < bootstrap < build < apply < url < buckets
    assert len(cmds) == buckets + 1
    assert not any(a.startswith("-target") for a in cmds[apply]), "the last apply is of everything"
    assert "-target=time_sleep.image_builder_ready" in cmds[bootstrap]
    for cmd in (cmds[bootstrap], cmds[apply]):
        assert cmd[-1] == "-var-file=prod.tfvars"  # extra Terraform arguments reach both applies
        assert "-auto-approve" in cmd and "-input=false" in cmd
    assert cmds[bootstrap][cmds[bootstrap].index("-var") :][:8] == cmds[apply][cmds[apply].index("-var") :][:8]


def test_the_image_is_built_as_the_image_builder_into_the_repository_terraform_names() -> None:
    cmds = dry_run(PROJECT, REGION)
    build = cmds[index(cmds, "gcloud", "builds", "submit")]
    subs = dict(pair.split("=", 1) for pair in build[build.index("--substitutions") + 1].split(","))
    assert set(subs) == {"_REGION", "_REPOSITORY", "_TAG", "_BUILDER"}
    cloudbuild = (ROOT / "renderer_image" / "cloudbuild.yaml").read_text()
    for key in subs:
        assert re.search(rf"^  {key}: ", cloudbuild, re.M), key
    # The names the script uses are the ones Terraform gives (var.name_prefix = scenerender).
    account_id = resources()["google_service_account"]["image_builder"]["account_id"]
    assert account_id == "${local.prefix}-image-builder"
    assert subs["_BUILDER"] == f"scenerender-image-builder@{PROJECT}.iam.gserviceaccount.com"
    repositories = resources()["google_artifact_registry_repository"]["docker"]["for_each"]
    assert repositories["images"]["id"] == "${var.name_prefix}"
    assert subs["_REPOSITORY"] == "scenerender" and subs["_REGION"] == REGION
    assert locals_()["names"]["source_bucket"] == "${var.project_id}-${var.name_prefix}-sources"
    staging = build[build.index("--gcs-source-staging-dir") + 1]
    assert staging == f"gs://{PROJECT}-scenerender-sources/cloudbuild"
    assert build[build.index("--config") + 1] == "renderer_image/cloudbuild.yaml"
    assert build[3] == "."  # the repository root is the build context
    # The image Terraform is given is the one built.
    apply = cmds[index(cmds, "terraform", "apply", start=index(cmds, "gcloud", "builds", "submit"))]
    image = apply[apply.index(f"renderer_image={REGION}-docker.pkg.dev/{PROJECT}/scenerender/renderer:{subs['_TAG']}")]
    assert image.endswith(subs["_TAG"]) and subs["_TAG"].startswith("src-")
    # Everything the bootstrap waits for exists and covers the image builder's grants.
    ready = resources()["time_sleep"]["image_builder_ready"]
    assert (
        "${google_artifact_registry_repository_iam_member.image_builder_pushes_renderer_images}" in ready["depends_on"]
    )
    assert block(resources()["google_artifact_registry_repository"]["docker"], "cleanup_policies")


def copy_tree(tmp_path: Path) -> Path:
    for name in ("scripts", "renderer_image", "scenerender"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements.lock", ".dockerignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def tag_of(cmds: list[list[str]]) -> str:
    build = cmds[index(cmds, "gcloud", "builds", "submit")]
    return re.findall(r"_TAG=([\w-]+)", " ".join(build))[0]


def test_the_image_tag_is_the_hash_of_what_goes_into_the_image(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    first = tag_of(dry_run(PROJECT, REGION, cwd=tree))
    assert first == tag_of(dry_run(PROJECT, REGION, cwd=tree))
    (tree / "tests").mkdir()
    (tree / "tests" / "test_x.py").write_text("x = 1\n")  # not in the image: same tag
    assert tag_of(dry_run(PROJECT, REGION, cwd=tree)) == first
    with (tree / "scenerender" / "core" / "render.py").open("a") as fh:
        fh.write("\n# changed\n")
    assert tag_of(dry_run(PROJECT, REGION, cwd=tree)) != first


def test_teardown_makes_things_deletable_then_deletes_everything_and_the_state_last() -> None:
    cmds = dry_run("--destroy", PROJECT, REGION)
    unlock = index(cmds, "terraform", "apply", "-var", "teardown={force_destroy_buckets=true,delete_firestore=true}")
    destroy = index(cmds, "terraform", "destroy")
    assert "teardown={force_destroy_buckets=true,delete_firestore=true}" in cmds[destroy]
    assert "-target=google_firestore_database.default" in cmds[unlock]
    staging = index(cmds, "gcloud", "storage", "rm", "--recursive", f"gs://gcf-v2-sources-PROJECT_NUMBER-{REGION}")
    state = index(cmds, "gcloud", "storage", "rm", "--recursive", "--all-versions", f"gs://{PROJECT}-tfstate")
    assert unlock < destroy < staging < state == len(cmds) - 1
    assert not any("builds" in c for c in cmds)
    # What the teardown variable switches, in Terraform.
    database = resources()["google_firestore_database"]["default"]
    assert "var.teardown.delete_firestore" in database["deletion_policy"]


@pytest.mark.parametrize(
    "args",
    [[], [PROJECT], [PROJECT, REGION, "extra"], ["Bad_Project", REGION], [PROJECT, "nowhere"], ["--frobnicate"]],
)
def test_bad_arguments_are_refused_before_anything_runs(args: list[str]) -> None:
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert "deploy.sh" in done.stderr or "usage" in done.stderr


def test_a_second_run_finds_everything_there_and_makes_nothing_again(tmp_path: Path) -> None:
    """gcloud and terraform stand-ins: every describe succeeds, as after a first deploy."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("gcloud", "terraform"):
        stub = bin_dir / tool
        stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "{tool} $*" >> "{log}"\n')
        stub.chmod(0o755)
    done = subprocess.run(
        ["bash", str(SCRIPT), PROJECT, REGION],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert not [c for c in calls if "buckets create" in c], calls  # the state bucket was there
    assert not [c for c in calls if "builds submit" in c], calls  # so was the image
    assert any("artifacts docker images describe" in c for c in calls)
    assert sum(c.startswith("terraform") and " apply " in c for c in calls) == 2  # applies are idempotent themselves
    assert "is already built" in done.stderr

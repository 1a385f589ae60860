"""The files the local cloud takes from a SceneRender source checkout rather than the package.

The package (``scenerender/``) is what pip installs and what the renderer's image holds; it
finds nothing of its own by a path in the repository. The local cloud, though, serves what
the checkout beside it holds, as the cloud deploys it from there:

| file | what for | setting |
| --- | --- | --- |
| ``functions/main.py`` | the Cloud Functions (terraform/functions.tf zips that folder) | ``functions_source`` |
| ``firestore.rules`` | the Firestore emulator's rules (Terraform releases the same file) | ``firestore_rules`` |
| ``tools/firebase/`` | the pinned Firebase CLI that runs the Auth emulator (scripts/setup.sh) | ``firebase_cli`` |
| ``web/dist/`` | the built web client `dev up` serves (scripts/setup.sh builds it) | ``web_dist`` |

Each is looked up here and nowhere else: the setting when given, else the checkout the
package is installed from (an editable install: the folder above ``scenerender/``). A file
that is in neither is an error naming the setting to set, never a silent fall-back to some
other layout (the web client alone is optional: without a built page `dev up` serves none).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import scenerender
from scenerender.dev.procs import DevStackError
from scenerender.settings import Settings


def checkout_root() -> Path:
    """The folder above the installed package: a SceneRender checkout for an editable install."""
    return Path(scenerender.__file__).resolve().parent.parent


def _file(settings: Settings, field: str, in_checkout: str, what: str) -> Path:
    """``field``'s file when set (it must exist), else ``in_checkout`` under the checkout."""
    name = Settings.env_name(field)
    given: str = getattr(settings, field)
    if given:
        path = Path(given)
        if not path.is_file():
            raise DevStackError(f"{name}={given}: no such file ({what})")
        return path
    found = checkout_root() / in_checkout
    if not found.is_file():
        raise DevStackError(
            f"the local cloud needs {what}, {in_checkout} of a SceneRender checkout, and there is none "
            f"beside the installed package ({found}): set {name} to its path"
        )
    return found


def functions_source(settings: Settings) -> Path:
    """The functions' ``main.py`` the local cloud serves under functions-framework."""
    return _file(settings, "functions_source", "functions/main.py", "the Cloud Functions' main.py")


def firestore_rules(settings: Settings) -> Path:
    """The Firestore security rules the local cloud loads into its emulator."""
    return _file(settings, "firestore_rules", "firestore.rules", "the Firestore security rules")


def firebase_cli(settings: Settings) -> Path:
    """The Firebase CLI that runs the Auth emulator: the setting, else the one scripts/setup.sh
    pins in the checkout's tools/firebase, else ``firebase`` on PATH."""
    name = Settings.env_name("firebase_cli")
    if settings.firebase_cli:
        given = Path(settings.firebase_cli)
        if not given.is_file():
            raise DevStackError(f"{name}={given}: no such file (the Firebase CLI, firebase-tools)")
        return given
    pinned = checkout_root() / "tools" / "firebase" / "node_modules" / ".bin" / "firebase"
    if pinned.is_file():
        return pinned
    on_path = shutil.which("firebase")
    if on_path:
        return Path(on_path)
    raise DevStackError(
        f"the Firebase CLI is not installed: run scripts/setup.sh (npm ci in tools/firebase), or set {name}"
    )


def web_dist(settings: Settings) -> Path | None:
    """The built web client (a folder with index.html), or None when there is none to serve."""
    name = Settings.env_name("web_dist")
    if settings.web_dist:
        given = Path(settings.web_dist)
        if not (given / "index.html").is_file():
            raise DevStackError(f"{name}={given}: no index.html there (the built web client: web/dist)")
        return given
    found = checkout_root() / "web" / "dist"
    return found if (found / "index.html").is_file() else None

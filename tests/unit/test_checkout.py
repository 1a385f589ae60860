"""The files the local cloud takes from a source checkout: the setting, else the checkout the
package is installed from, else an error naming the setting; never another layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from scenerender.dev import checkout
from scenerender.dev.procs import DevStackError
from scenerender.settings import Settings
from tests.imports import ROOT

FILES: list[tuple[str, Callable[[Settings], Path], str]] = [
    ("functions_source", checkout.functions_source, "functions/main.py"),
    ("firestore_rules", checkout.firestore_rules, "firestore.rules"),
]


@pytest.fixture
def no_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The package installed from a wheel: nothing of the checkout beside it."""
    bare = tmp_path / "site-packages"
    bare.mkdir()
    monkeypatch.setattr(checkout, "checkout_root", lambda: bare)
    return bare


def test_this_checkout_is_the_one_the_package_is_installed_from() -> None:
    assert checkout.checkout_root() == ROOT
    for _, find, relative in FILES:
        assert find(Settings()) == ROOT / relative


@pytest.mark.parametrize(("field", "find", "relative"), FILES, ids=[f for f, _, _ in FILES])
def test_without_a_checkout_the_error_names_the_setting(
    no_checkout: Path, field: str, find: Callable[[Settings], Path], relative: str
) -> None:
    with pytest.raises(DevStackError) as refused:
        find(Settings())
    assert Settings.env_name(field) in refused.value.message
    assert str(no_checkout / relative) in refused.value.message


@pytest.mark.parametrize(("field", "find", "relative"), FILES, ids=[f for f, _, _ in FILES])
def test_the_setting_names_the_file_and_a_missing_one_is_refused(
    no_checkout: Path, tmp_path: Path, field: str, find: Callable[[Settings], Path], relative: str
) -> None:
    given = tmp_path / "elsewhere" / Path(relative).name
    given.parent.mkdir()
    settings = Settings().model_copy(update={field: str(given)})
    with pytest.raises(DevStackError) as refused:
        find(settings)
    assert f"{Settings.env_name(field)}={given}: no such file" in refused.value.message
    given.write_text("x")
    assert find(settings) == given


def test_the_firebase_cli_is_the_setting_or_the_pinned_one(no_checkout: Path, tmp_path: Path) -> None:
    missing = tmp_path / "firebase"
    with pytest.raises(DevStackError) as refused:
        checkout.firebase_cli(Settings(firebase_cli=str(missing)))
    assert f"SCENERENDER_FIREBASE_CLI={missing}" in refused.value.message
    pinned = no_checkout / "tools" / "firebase" / "node_modules" / ".bin" / "firebase"
    pinned.parent.mkdir(parents=True)
    pinned.write_text("")
    assert checkout.firebase_cli(Settings()) == pinned


def test_the_web_client_is_optional_but_a_named_one_must_be_built(no_checkout: Path, tmp_path: Path) -> None:
    assert checkout.web_dist(Settings()) is None  # nothing built: dev up serves no page
    folder = tmp_path / "dist"
    folder.mkdir()
    with pytest.raises(DevStackError) as refused:
        checkout.web_dist(Settings(web_dist=str(folder)))
    assert "SCENERENDER_WEB_DIST" in refused.value.message and "index.html" in refused.value.message
    (folder / "index.html").write_text("<html>")
    assert checkout.web_dist(Settings(web_dist=str(folder))) == folder
    built = no_checkout / "web" / "dist"
    built.mkdir(parents=True)
    (built / "index.html").write_text("<html>")
    assert checkout.web_dist(Settings()) == built

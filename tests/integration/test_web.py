"""The web client in Debian's headless Chromium, against the whole local cloud.

The page (web/, served by the stack's web process) signs in against the Auth emulator, submits
through the HTTP API with its ID token, and follows jobs with Firestore listeners under
firestore.rules. Each test acts as a user would (fills fields, clicks) and checks what the page
shows. Screenshots of every screen go to a temp dir, or to docs/img/ with --update-screenshots.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from scenerender.cloud.clients import Clients
from scenerender.dev.devstack import DevStack
from scenerender.messages import ErrorBlock, JobDocument, JobOutput, JobStatus
from scenerender.settings import Settings
from tests.integration.conftest import workers_paused
from tests.unit.cloud_fakes import error_of, output_of
from tests.unit.cloud_fakes import rendered as completed_output

pytestmark = [pytest.mark.integration, pytest.mark.emulators]

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/setup.sh); Playwright never downloads one
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
# Where ``screenshot`` writes, set for the module by ``shots_into``.
SHOTS: dict[str, Path] = {}
PASSWORD = "web-test-password"
RENDER_TIMEOUT_MS = int(os.environ.get("WEB_TEST_RENDER_TIMEOUT_MS", "240000"))

# Records every change the page shows in its live regions, with the wall-clock time it showed it.
OBSERVE = """
() => {
  window.__changes = [];
  const read = () => {
    const progress = document.querySelector('#job-state progress, #batch-state progress');
    const status = document.querySelector('#job-state [data-status], #batch-state [data-status]');
    const stage = document.querySelector('#stage');
    const counts = document.querySelector('#batch-counts');
    const eta = document.querySelector('#batch-eta');
    return {
      t: performance.timeOrigin + performance.now(),
      progress: progress ? Number(progress.dataset.progress) : null,
      status: status ? status.dataset.status : null,
      stage: stage ? stage.dataset.stage : null,
      completed: counts ? Number(counts.dataset.completed) : null,
      eta: eta ? eta.textContent : null,
    };
  };
  new MutationObserver(() => window.__changes.push(read()))
    .observe(document.querySelector('main'), {childList: true, subtree: true, characterData: true});
  window.__document_marker = Math.random();
  return window.__document_marker;
}
"""


def shots_dir(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/img/ under --update-screenshots, else a temp dir: the committed screenshots change
    only when asked to (every run rewrote them, leaving a dirty tree behind each test run)."""
    if config.getoption("update_screenshots", default=False):
        return DOCS_IMG
    return tmp_path_factory.mktemp("web-screenshots")


@pytest.fixture(scope="module", autouse=True)
def shots_into(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    SHOTS["dir"] = shots_dir(request.config, tmp_path_factory)
    yield SHOTS["dir"]
    SHOTS.clear()


@pytest.fixture(scope="module")
def served(cloud: DevStack) -> str:
    assert cloud.web_running(), "web/dist is not built: run scripts/setup.sh"
    return cloud.web_url


@pytest.fixture(scope="module")
def web(served: str, cloud: DevStack, settings: Settings) -> str:
    """The page's URL, with a short sample scene published (4 segments of 2 s)."""
    from scenerender.dev.webserve import sample_specs

    if "auth" not in json.loads(cloud.web_config_path.read_text())["emulators"]:
        pytest.skip("the local cloud runs no Firebase Auth emulator yet: the page cannot sign in")
    cloud.publish_web_samples(sample_specs(settings, segments=4, seconds=2.0))
    return served


def test_the_page_holds_only_public_config(served: str, cloud: DevStack) -> None:
    """The page, its bundle and config.json are served; nothing secret is in them; /api reaches the API."""
    page = httpx.get(served, timeout=10)
    assert page.status_code == 200 and 'src="app.js"' in page.text
    config = httpx.get(served + "config.json", timeout=10).json()
    assert set(config) <= {"firebase", "apiUrl", "emulators", "googleSignIn", "collections", "samples"}
    assert set(config["firebase"]) <= {"apiKey", "projectId", "authDomain", "appId"}
    bundle = httpx.get(served + "app.js", timeout=30).text
    source_map = httpx.get(served + "app.js.map", timeout=30).text
    key = json.loads((cloud.state_dir / "signer-key.json").read_text())
    for text in (page.text, json.dumps(config), bundle, source_map):
        assert "PRIVATE KEY" not in text and key["client_email"] not in text
    # The same-origin /api is the HTTP API: it answers with its own JSON error, not the static server's page.
    answer = httpx.get(served + "api/?job_id=nobody", timeout=30)
    assert answer.status_code in (400, 401, 404)
    assert "code" in answer.json()["error"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


class User:
    """One person in their own browser context (own storage, own sign-in)."""

    def __init__(self, browser: Any, web: str, *, width: int = 1100, email: str | None = None) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.requests: list[tuple[float, str, str]] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append((time.time(), r.method, r.url)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.web = web
        self.email = email or f"u-{uuid.uuid4().hex[:10]}@scenerender.test"
        self.uid = ""

    def sign_up(self, shot: str | None = None, *, keyboard: bool = False) -> None:
        page = self.page
        page.goto(self.web)
        page.get_by_role("heading", name="Sign in").wait_for()
        if keyboard:
            # Keyboard only: the heading has focus; Tab moves through the labelled fields in order.
            page.keyboard.press("Tab")
            page.keyboard.type(self.email)
            page.keyboard.press("Tab")
            page.keyboard.type(PASSWORD)
            page.keyboard.press("Tab")  # Sign in
            page.keyboard.press("Tab")  # Create account
            assert page.evaluate("document.activeElement.id") == "signup"
            page.keyboard.press("Enter")
        else:
            page.get_by_label("Email").fill(self.email)
            page.get_by_label("Password").fill(PASSWORD)
            assert_accessible(page)
            if shot:
                screenshot(page, shot)
            page.get_by_role("button", name="Create account").click()
        page.wait_for_function("document.body.dataset.user")
        page.get_by_role("heading", name="My renders").wait_for()
        self.uid = page.evaluate("document.body.dataset.user")

    def sign_in(self) -> None:
        """Sign in to an existing account (the same person in another browser: nothing stored here)."""
        page = self.page
        page.goto(self.web)
        page.get_by_role("heading", name="Sign in").wait_for()
        page.get_by_label("Email").fill(self.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.get_by_role("heading", name="My renders").wait_for()
        self.uid = page.evaluate("document.body.dataset.user")

    def status(self) -> str | None:
        value: str | None = self.page.evaluate("document.querySelector('#job-state [data-status]')?.dataset.status")
        return value

    def wait_status(self, *statuses: str, timeout: int = RENDER_TIMEOUT_MS) -> None:
        self.page.wait_for_function(
            "s => s.includes(document.querySelector('#job-state [data-status]')?.dataset.status)",
            arg=list(statuses),
            timeout=timeout,
        )

    def new_render(self, spec: dict[str, Any] | None = None, *, sample: str | None = None) -> None:
        page = self.page
        page.get_by_role("link", name="New render").first.click()
        page.get_by_role("heading", name="New render").wait_for()
        if sample:
            page.get_by_label("Sample scene").select_option(label=sample)
        else:
            page.get_by_label("Or paste the job spec (JSON)").fill(json.dumps(spec, indent=2))

    def close(self) -> None:
        self.context.close()


# Every visible control on the screen without an accessible name: no label, no aria-label, no text.
UNLABELLED = """
() => [...document.querySelectorAll('input, select, textarea, button, progress, video')]
  .filter((el) => el.offsetParent !== null || el === document.activeElement)
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
    && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map((el) => el.id || el.outerHTML.slice(0, 80))
"""


def assert_accessible(page: Any, *, width: int = 320) -> None:
    """Every control of the screen is labelled, status changes have their live region, and at
    phone width (320 px, the narrowest phones in use) nothing is wider than the screen."""
    assert page.evaluate(UNLABELLED) == []
    live = page.locator("#live")
    assert (live.get_attribute("role"), live.get_attribute("aria-live")) == ("status", "polite")
    size = page.viewport_size
    page.set_viewport_size({"width": width, "height": 800})
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        page.set_viewport_size(size)


def screenshot(page: Any, name: str) -> None:
    into = SHOTS["dir"]
    into.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(into / f"web-{name}.png"), full_page=True)


def sample_title(cloud: DevStack) -> str:
    config = json.loads(cloud.web_config_path.read_text())
    return str(config["samples"][0]["title"])


def sample_spec(cloud: DevStack) -> dict[str, Any]:
    config = json.loads(cloud.web_config_path.read_text())
    spec: dict[str, Any] = config["samples"][0]["spec"]
    return spec


def short_spec(cloud: DevStack, segments: int, job_id: str) -> dict[str, Any]:
    """The sample's first segments with its looped music alone (the other clips are placed for its whole length)."""
    spec = sample_spec(cloud)
    spec["segments"] = spec["segments"][:segments]
    spec["audio"]["clips"] = [c for c in spec["audio"]["clips"] if c["type"] == "music"]
    spec["job_id"] = job_id
    return spec


def ffprobe_duration(path: Path) -> float:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(json.loads(done.stdout)["format"]["duration"])


@pytest.fixture(scope="module")
def director(browser: Any, web: str) -> Iterator[User]:
    user = User(browser, web)
    user.sign_up(shot="sign-in")
    yield user
    user.close()


@pytest.fixture(scope="module")
def rendered(
    stores: Clients, director: User, cloud: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The sample scene submitted from the New render screen and followed to COMPLETED on its job page."""
    page = director.page
    director.new_render(sample=sample_title(cloud))
    page.get_by_text("4 segments · scene 8.00 s").wait_for()
    dialogue = [c["duration"] for c in sample_spec(cloud)["audio"]["clips"] if c["type"] == "dialogue"]
    assert f"Dialogue: 2 clips, {sum(dialogue):.1f} s" in page.locator("#tracks").inner_text()
    page.get_by_label("Resolution").select_option("360p")
    screenshot(page, "new-render")
    assert_accessible(page)
    job_id = page.get_by_label("Job id").input_value()
    page.get_by_role("button", name="Render").click()
    page.get_by_role("heading", name=f"Job {job_id}").wait_for()
    submitted_at = time.time()
    marker = page.evaluate(OBSERVE)
    page.wait_for_function(
        "document.querySelector('#job-state [data-status]')?.dataset.status === 'RUNNING'", timeout=RENDER_TIMEOUT_MS
    )
    screenshot(page, "job-running")
    page.wait_for_function(
        "['COMPLETED', 'FAILED'].includes(document.querySelector('#job-state [data-status]')?.dataset.status)",
        timeout=RENDER_TIMEOUT_MS,
    )
    ended_at = time.time()
    announced = page.locator("#live").inner_text()
    changes: list[dict[str, Any]] = page.evaluate("window.__changes")
    same_document = page.evaluate("window.__document_marker") == marker
    doc = stores.jobs.get(job_id)
    window = [r for r in director.requests if submitted_at <= r[0] <= ended_at]
    return {
        "job_id": job_id,
        "output": output_of(doc),  # the job COMPLETED
        "changes": changes,
        "same_document": same_document,
        "requests": window,
        "announced": announced,
    }


def test_progress_advances_live_through_the_stages(director: User, rendered: dict[str, Any]) -> None:
    """Sign in, submit the sample scene, watch it: the listener moves the bar, with no reload and no polling."""
    changes = rendered["changes"]
    stages = [c["stage"] for c in changes if c["stage"]]
    distinct_stages = list(dict.fromkeys(stages))
    progress = [c["progress"] for c in changes if c["progress"] is not None]
    distinct_progress = sorted(set(progress))
    assert len(distinct_stages) >= 3, distinct_stages
    assert len(distinct_progress) >= 3, distinct_progress
    assert progress == sorted(progress), "the bar never goes back"
    assert distinct_progress[-1] == 1.0
    assert rendered["same_document"], "the page was reloaded"
    assert rendered["announced"] == f"Job {rendered['job_id']}: completed"  # said to screen readers (aria-live)
    requests = rendered["requests"]
    # Polling would ask the API (or fetch the document) once per update. The page asked the API
    # nothing after its POST, and its listener's channel carried every update in fewer requests.
    # The one GET is the accepted spec (for Re-render), asked once when the job has ended.
    api_calls = [r for r in requests if "/api" in r[2] and r[1] != "POST"]
    assert [(m, u.split("/api", 1)[1]) for _, m, u in api_calls] in ([], [("GET", f"/?job_id={rendered['job_id']}")])
    firestore = [r for r in requests if "google.firestore" in r[2]]
    video = [r for r in requests if r[2] == rendered["output"].url]
    others = [r for r in requests if r not in firestore and r not in video and "/api" not in r[2]]
    assert others == []
    updates = len({(c["stage"], c["progress"], c["status"]) for c in changes})
    assert len(firestore) < updates / 2, (len(firestore), updates, firestore)
    assert director.errors == []


def test_video_plays_the_signed_url_with_the_results_duration(director: User, rendered: dict[str, Any]) -> None:
    page = director.page
    output: JobOutput = rendered["output"]
    video = page.locator("#video")
    assert video.get_attribute("src") == output.url
    page.wait_for_function("document.querySelector('#video').readyState >= 1", timeout=30_000)
    duration = page.evaluate("document.querySelector('#video').duration")
    # The element's duration is the file's; the result's is measured on it: one output frame apart at most.
    assert duration == pytest.approx(output.duration_s, abs=1 / output.fps), (duration, output.duration_s)
    # The result's measured figures: duration, loudness, A/V drift (and frame, peak, size).
    terms, values = (page.locator(f"#figures {tag}").all_inner_texts() for tag in ("dt", "dd"))
    shown = dict(zip(terms, values, strict=True))
    assert output.loudness_lufs is not None  # the sample scene has sound
    assert shown["Duration"] == f"{output.duration_s:.1f} s"
    assert shown["Loudness"] == f"{output.loudness_lufs:.1f} LUFS"
    assert shown["A/V drift"] == f"{output.av_drift_ms:.1f} ms"
    assert shown["Frame"] == f"{output.width}\N{MULTIPLICATION SIGN}{output.height} @ {output.fps:g} fps"
    screenshot(page, "job-completed")
    assert_accessible(page)


def test_download_button_fetches_the_mp4(director: User, rendered: dict[str, Any], tmp_path: Path) -> None:
    page = director.page
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Download MP4").click()
    target = tmp_path / "download.mp4"
    info.value.save_as(target)
    data = target.read_bytes()
    assert data[4:8] == b"ftyp"
    output: JobOutput = rendered["output"]
    assert len(data) == output.size_bytes
    assert ffprobe_duration(target) == pytest.approx(output.duration_s, abs=0.05)
    assert info.value.suggested_filename == f"{rendered['job_id']}.mp4"


def test_my_renders_lists_the_job(director: User, rendered: dict[str, Any]) -> None:
    page = director.page
    page.get_by_role("link", name="My renders", exact=True).click()
    row = page.locator(f'li.job[data-job-id="{rendered["job_id"]}"]')
    row.wait_for()
    assert row.get_attribute("data-status") == "COMPLETED"
    screenshot(page, "my-renders")
    # Phone width: nothing wider than the screen.
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page, "my-renders-phone")
    page.set_viewport_size({"width": 1100, "height": 900})


def test_another_user_never_sees_the_first_users_jobs(browser: Any, web: str, rendered: dict[str, Any]) -> None:
    other = User(browser, web, width=375)  # a phone
    try:
        other.sign_up(keyboard=True)
        page = other.page
        page.wait_for_selector('#jobs[aria-busy="false"]', state="attached")
        assert page.locator("li.job").count() == 0
        assert page.locator("#no-jobs").is_visible()
        job_id = rendered["job_id"]
        code = page.evaluate("id => window.scenerender.readJob(id).then(() => 'read', e => e.code)", job_id)
        assert code == "permission-denied"
        status = page.evaluate("id => window.scenerender.getJob(id).then(() => 200, e => e.status)", job_id)
        assert status in (403, 404)
        # The job page shows what it shows for an id nobody used: it waits, and tells nothing of the job.
        page.goto(f"{web}#/job/{job_id}")
        page.locator('#job-state [data-status="WAITING"]').wait_for()
        theirs = page.locator("main").inner_text()
        page.goto(f"{web}#/job/never-{job_id}")
        page.locator('#job-state [data-status="WAITING"]').wait_for()
        assert page.locator("main").inner_text() == theirs.replace(job_id, f"never-{job_id}")
        assert page.locator("#video").count() == 0 and other.errors == []
    finally:
        other.close()


# The accessible name of the focused element (its label, aria-label or text), and its tag.
FOCUSED = """
() => {
  const el = document.activeElement;
  const label = el.labels && el.labels.length ? el.labels[0].textContent : null;
  return [el.tagName.toLowerCase(), (label || el.getAttribute('aria-label') || el.textContent || '').trim()];
}
"""


def tab_to(page: Any, name: str, *, back: bool = False, limit: int = 40) -> str:
    """Press Tab (or Shift+Tab) until the control named ``name`` has focus: reachable by keyboard."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        tag, focused = page.evaluate(FOCUSED)
        if focused == name:
            return str(tag)
    raise AssertionError(f"{name!r} cannot be reached with {'Shift+Tab' if back else 'Tab'}")


def assert_heading_focused(page: Any, title: str) -> None:
    """A new screen puts the keyboard (and a screen reader) on its heading."""
    page.get_by_role("heading", name=title).wait_for()
    page.wait_for_function(
        "t => document.activeElement.tagName === 'H1' && document.activeElement.textContent === t", arg=title
    )


def test_a_phone_user_renders_and_downloads_with_the_keyboard_alone(
    stores: Clients, browser: Any, web: str, cloud: DevStack, tmp_path: Path
) -> None:
    """At 320 px, without a pointer: sign up, open New render, choose the sample scene and a
    resolution, Render, follow the job to the end (announced), download the MP4. Every screen
    puts focus on its heading and fits the screen's width."""
    user = User(browser, web, width=320)
    try:
        user.sign_up(keyboard=True)
        page = user.page
        assert_heading_focused(page, "My renders")
        assert page.evaluate("document.documentElement.scrollWidth") <= 320
        assert tab_to(page, "New render", back=True) == "a"  # the header's link, just before the screen
        page.keyboard.press("Enter")
        assert_heading_focused(page, "New render")
        assert tab_to(page, "Sample scene") == "select"
        page.keyboard.press("ArrowDown")  # the first sample
        page.get_by_text("4 segments · scene 8.00 s").wait_for()
        assert tab_to(page, "Resolution") == "select"
        page.keyboard.type("3")  # the first choice that starts so: 360p
        assert page.get_by_label("Resolution").input_value() == "360p"
        job_id = page.get_by_label("Job id").input_value()
        assert page.evaluate("document.documentElement.scrollWidth") <= 320
        screenshot(page, "new-render-phone")
        assert tab_to(page, "Render") == "button"
        page.keyboard.press("Enter")
        assert_heading_focused(page, f"Job {job_id}")
        user.wait_status("COMPLETED", "FAILED")
        assert user.status() == "COMPLETED"
        assert page.locator("#live").inner_text() == f"Job {job_id}: completed"  # announced
        assert page.evaluate("document.documentElement.scrollWidth") <= 320
        screenshot(page, "job-phone")
        assert tab_to(page, "Download MP4") == "button"
        with page.expect_download(timeout=60_000) as info:
            page.keyboard.press("Enter")
        target = tmp_path / "keyboard.mp4"
        info.value.save_as(target)
        assert target.stat().st_size == output_of(stores.jobs.get(job_id)).size_bytes
        assert target.read_bytes()[4:8] == b"ftyp"
        assert user.errors == []
    finally:
        user.close()


def test_an_invalid_spec_shows_the_located_error(director: User, cloud: DevStack) -> None:
    page = director.page
    spec = json.loads(json.dumps(sample_spec(cloud)))
    spec["segments"][1]["duration"] = -2
    director.new_render(spec)
    page.get_by_role("button", name="Render").click()
    error = page.locator("#submit-error [data-error-code]")
    error.wait_for()
    assert error.get_attribute("data-error-code") == "INVALID_SPEC"
    assert "segments[1].duration" in error.inner_text()
    screenshot(page, "invalid-spec")
    # Broken JSON is located before anything is sent.
    page.get_by_label("Or paste the job spec (JSON)").fill('{"version": 1,\n  "segments": [}')
    assert "line 2" in page.locator("#summary").inner_text()
    assert page.get_by_role("button", name="Render").is_disabled()


def test_a_failed_job_shows_its_code_and_reason(
    stores: Clients, director: User, cloud: DevStack, settings: Settings
) -> None:
    page = director.page
    spec = json.loads(json.dumps(sample_spec(cloud)))
    missing = f"gs://{settings.media_bucket}/users/{director.uid}/no-such-file.mp4"
    spec["segments"][0]["url"] = missing
    spec["job_id"] = f"fails-{uuid.uuid4().hex[:8]}"
    director.new_render(spec)
    page.get_by_role("button", name="Render").click()
    page.get_by_role("heading", name=f"Job {spec['job_id']}").wait_for()
    page.wait_for_function(
        "document.querySelector('#job-state [data-status]')?.dataset.status === 'FAILED'", timeout=RENDER_TIMEOUT_MS
    )
    error = page.locator("#job-state [data-error-code]")
    failed = error_of(stores.jobs.get(spec["job_id"]))
    assert error.get_attribute("data-error-code") == failed.code
    assert failed.code.startswith("INPUT_")
    assert "no-such-file.mp4" in error.inner_text()
    # Each located problem as the contract writes it ({path, problem}), the failing input first.
    details = failed.details
    assert details and details[0].path == "segments[0].url" and details[0].problem, details
    shown = error.locator(".error-details li").all_inner_texts()
    assert shown == [f"{d.path}: {d.problem}" for d in details]
    # My renders shows it too, in the job's row.
    page.get_by_role("link", name="My renders", exact=True).click()
    row = page.locator(f'li.job[data-job-id="{spec["job_id"]}"] [data-error-code]')
    row.wait_for()
    assert row.get_attribute("data-error-code") == failed.code
    assert row.locator(".error-details li").all_inner_texts() == shown
    page.go_back()
    screenshot(page, "job-failed")
    assert_accessible(page)


def test_a_batch_of_three_scenes_updates_live(director: User, cloud: DevStack) -> None:
    page = director.page
    base = sample_spec(cloud)
    batch_id = f"batch-{uuid.uuid4().hex[:8]}"
    scenes = []
    for i in range(3):
        scene = json.loads(json.dumps(base))
        scene["scene_id"] = f"scene-{i + 1}"
        scene["segments"] = scene["segments"][: i + 1]
        scene["output"] = {"resolution": "360p", "preview": True}
        # The looped music alone: the other clips are placed for the whole sample's length.
        scene["audio"]["clips"] = [c for c in scene["audio"]["clips"] if c["type"] == "music"]
        scenes.append(scene)
    director.new_render({"version": 1, "batch_id": batch_id, "scenes": scenes})
    page.get_by_text("A batch of 3 scenes").wait_for()
    page.get_by_role("button", name="Render").click()
    page.get_by_role("heading", name=f"Batch {batch_id}").wait_for()
    marker = page.evaluate(OBSERVE)
    page.wait_for_function(
        "Number(document.querySelector('#batch-counts')?.dataset.completed) >= 1", timeout=RENDER_TIMEOUT_MS
    )
    screenshot(page, "batch-running")
    page.wait_for_function(
        "document.querySelector('#batch-counts')?.dataset.completed === '3'", timeout=RENDER_TIMEOUT_MS
    )
    page.wait_for_function("document.querySelectorAll('#batch-jobs li.job[data-status=COMPLETED]').length === 3")
    screenshot(page, "batch")
    assert_accessible(page)
    changes = page.evaluate("window.__changes")
    assert page.evaluate("window.__document_marker") == marker
    completed = [c["completed"] for c in changes if c["completed"] is not None]
    assert completed == sorted(completed)
    assert completed[-1] == 3 and len(set(completed)) >= 2, completed  # seen on the way, not only at the end
    progress = sorted({c["progress"] for c in changes if c["progress"] is not None})
    assert len(progress) >= 3, progress
    # The ETA is shown while scenes remain (from the weighted progress so far), and goes at the end.
    etas = [c["eta"] for c in changes if c["completed"] is not None and c["completed"] < 3]
    assert any(re.search(r"ETA \d", e or "") for e in etas), etas
    assert "3 of 3 done" in page.locator("#batch-counts").inner_text()
    assert page.locator("#batch-eta").inner_text() == "100 % · ETA \N{EN DASH}"


def test_re_render_from_another_browser_runs_the_same_job_again(
    stores: Clients, browser: Any, web: str, director: User, rendered: dict[str, Any]
) -> None:
    """The owner, signed in in a second browser (nothing of the first stored there), re-renders
    the job: the page asks the API for the spec the job was accepted from and sends it again."""
    job_id = rendered["job_id"]
    again = User(browser, web, email=director.email)
    try:
        again.sign_in()
        page = again.page
        page.goto(f"{web}#/job/{job_id}")
        again.wait_status("COMPLETED", timeout=30_000)
        page.get_by_role("button", name="Re-render").click()
        again.wait_status("QUEUED", "RUNNING", timeout=60_000)
        again.wait_status("COMPLETED")
        doc = stores.jobs.get(job_id)
        assert output_of(doc) and doc is not None and len(doc.history) == 1
        assert page.locator("#video").get_attribute("src") == output_of(doc).url
        assert again.errors == []
    finally:
        again.close()


def test_promote_a_preview_to_full_quality_from_another_browser(
    stores: Clients, browser: Any, web: str, director: User, cloud: DevStack
) -> None:
    """A preview rendered in one browser is promoted in another: a full-quality job of its own."""
    spec = short_spec(cloud, 2, f"preview-{uuid.uuid4().hex[:8]}")
    director.new_render(spec)
    director.page.get_by_label("Resolution").select_option("720p")
    director.page.get_by_label("Preview (quick, at most 480p)").check()
    director.page.get_by_role("button", name="Render").click()
    director.page.get_by_role("heading", name=f"Job {spec['job_id']}").wait_for()
    director.wait_status("COMPLETED", "FAILED")
    preview = output_of(stores.jobs.get(spec["job_id"]))
    assert preview.height == 480
    again = User(browser, web, email=director.email)
    try:
        again.sign_in()
        page = again.page
        page.goto(f"{web}#/job/{spec['job_id']}")
        page.get_by_role("button", name="Render full quality").click()
        full_id = f"{spec['job_id']}-full"
        page.get_by_role("heading", name=f"Job {full_id}").wait_for()
        again.wait_status("COMPLETED", "FAILED")
        full = output_of(stores.jobs.get(full_id))
        assert (full.width, full.height) == (1280, 720)
        assert full.duration_s == pytest.approx(preview.duration_s, abs=0.05)
        # The full render is no preview: it offers Re-render, not another promotion.
        page.get_by_role("button", name="Re-render").wait_for()
        assert page.get_by_role("button", name="Render full quality").count() == 0
        screenshot(page, "job-promoted")
        assert again.errors == []
    finally:
        again.close()


def test_the_job_page_picks_the_job_up_as_soon_as_it_is_written(stores: Clients, browser: Any, web: str) -> None:
    """A job page opened before the pipeline writes the job shows it on the first write. It
    listens through a query (owner_uid == me, id == the job), so nothing is retried meanwhile."""
    user = User(browser, web)
    try:
        user.sign_up()
        page = user.page
        job_id = f"appears-{uuid.uuid4().hex[:8]}"
        page.goto(f"{web}#/job/{job_id}")
        page.locator('#job-state [data-status="WAITING"]').wait_for()
        before = len(user.requests)
        page.wait_for_timeout(2_500)  # long enough for several retries, had there been any
        sent = [r for r in user.requests[before:] if "google.firestore" in r[2] and r[1] == "POST"]
        assert sent == [], sent
        marker = page.evaluate(OBSERVE)
        written_at = time.time()
        jobs = stores.jobs
        assert jobs.create_job(job_id, JobDocument(status=JobStatus.QUEUED, stage="queued", owner_uid=user.uid))
        user.wait_status("QUEUED", timeout=30_000)
        shown = next(c for c in page.evaluate("window.__changes") if c["status"] == "QUEUED")
        print(f"job written -> shown on the page: {(shown['t'] / 1000 - written_at) * 1000:.0f} ms")
        assert page.evaluate("window.__document_marker") == marker
        # Every later write arrives on the same listener.
        jobs.fail(job_id, ErrorBlock.internal("stopped by the test"))
        user.wait_status("FAILED", timeout=30_000)
        assert user.errors == []
    finally:
        user.close()


def test_google_sign_in_where_configured(browser: Any, web: str, cloud: DevStack) -> None:
    """Google sign-in is offered only where config.json enables it, and wired to Firebase's popup.

    The popup cannot complete here, with the emulator or without. Both ends of its relay (and of
    the redirect flow's) are Google's gapi.iframes, loaded from https://apis.google.com/js/api.js:
    the SDK loads it in the page to open the Auth emulator's helper iframe (/emulator/auth/iframe),
    and that iframe loads it again to pass the chooser's answer back to the page (without it the
    emulator says "Error loading gapi.iframe! Please check your Internet connection"). These
    machines reach no host but package registries, and a stand-in for Google's script would test
    the stand-in. What works offline, and is tested: the button is offered only where configured;
    pressed, it tries Google's script and says in plain words that it did not load; the
    emulator's own chooser (/emulator/auth/handler, its unpkg.com styles optional) lists the
    Google account; and the client's other Google door, a Google ID token
    (signInWithCredential with GoogleAuthProvider.credential: Google's one-tap button gives one;
    the emulator takes an unsigned one), signs that account in, the chooser's token the same user.
    """
    from scenerender.dev.webserve import write_json

    config = json.loads(cloud.web_config_path.read_text())
    assert config["googleSignIn"] is False  # not configured: not offered
    before = User(browser, web)
    try:
        before.page.goto(web)
        before.page.get_by_role("heading", name="Sign in").wait_for()
        assert before.page.get_by_role("button", name="Sign in with Google").count() == 0
    finally:
        before.close()
    user = User(browser, web)
    try:
        write_json(cloud.web_config_path, {**config, "googleSignIn": True})
        user.context.route("https://apis.google.com/**", lambda route: route.abort())
        popups: list[Any] = []
        page = user.page
        page.on("popup", lambda popup: popups.append(popup))
        page.goto(web)
        page.get_by_role("heading", name="Sign in").wait_for()
        page.get_by_role("button", name="Sign in with Google").focus()
        page.keyboard.press("Enter")
        error = page.locator("#signin-error [data-error-code]")
        error.wait_for()
        assert "apis.google.com" in error.inner_text(), error.inner_text()
        assert any(u.startswith("https://apis.google.com/js/api.js") for _, _, u in user.requests)
        assert popups == []
        assert page.locator("#live").inner_text() == "Sign-in failed"
        email = f"g-{uuid.uuid4().hex[:10]}@gmail.test"
        claims = json.dumps({"sub": uuid.uuid4().hex, "email": email, "email_verified": True})
        page.evaluate("token => window.scenerender.signInWithGoogleIdToken(token)", claims)
        page.get_by_role("heading", name="My renders").wait_for()
        assert page.evaluate("window.scenerender.user.providerData.map(p => p.providerId)") == ["google.com"]
        assert page.locator("#who").inner_text() == email
        page.wait_for_selector('#jobs[aria-busy="false"]', state="attached")
        assert page.locator("li.job").count() == 0  # a new account: nobody else's jobs
        uid = user.page.evaluate("document.body.dataset.user")
        # The emulator's own Google chooser (the page its popup shows) works offline and lists
        # that account; the ID token it would hand back through the relay signs the same user in.
        chooser = user.context.new_page()
        chooser.route(re.compile(r"https://(unpkg\.com|fonts\.googleapis\.com)/.*"), lambda route: route.abort())
        chooser.goto(
            f"{config['emulators']['auth']}/emulator/auth/handler?apiKey={config['firebase']['apiKey']}"
            "&appName=%5BDEFAULT%5D&authType=signInViaPopup&providerId=google.com&eventId=1"
        )
        account = chooser.locator(".js-reuse-account", has_text=email)
        account.wait_for()
        token = urllib.parse.unquote(account.get_attribute("data-id-token") or "")
        assert json.loads(token)["email"] == email
        chooser.close()
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in").wait_for()
        page.evaluate("token => window.scenerender.signInWithGoogleIdToken(token)", token)
        page.get_by_role("heading", name="My renders").wait_for()
        assert page.evaluate("document.body.dataset.user") == uid
    finally:
        write_json(cloud.web_config_path, config)
        user.close()


def test_the_local_user_button_signs_in_the_development_account(browser: Any, web: str) -> None:
    user = User(browser, web)
    try:
        page = user.page
        page.goto(web)
        page.get_by_role("button", name="Use the local user").click()
        page.get_by_role("heading", name="My renders").wait_for()
        assert page.locator("#who").inner_text() == "local-user@scenerender.test"
        assert page.locator("#live").inner_text() == "Signed in as local-user@scenerender.test"
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in").wait_for()
        page.get_by_role("button", name="Use the local user").click()  # the account is reused
        page.get_by_role("heading", name="My renders").wait_for()
        assert user.errors == []
    finally:
        user.close()


def test_new_render_takes_an_uploaded_spec_and_sends_the_tracks_as_ticked(
    stores: Clients, director: User, cloud: DevStack, settings: Settings, tmp_path: Path
) -> None:
    """Upload a job_spec.json, untick a track, pick a resolution: the API stores that spec."""
    spec = json.loads(json.dumps(sample_spec(cloud)))
    spec["segments"] = spec["segments"][:1]
    spec["audio"]["clips"] = [c for c in spec["audio"]["clips"] if c["type"] in ("music", "sfx")]
    for clip in spec["audio"]["clips"]:
        if "segment_id" in clip:
            clip["segment_id"] = spec["segments"][0]["id"]
    spec["job_id"] = f"upload-{uuid.uuid4().hex[:8]}"
    upload = tmp_path / "job_spec.json"
    upload.write_text(json.dumps(spec))
    page = director.page
    page.get_by_role("link", name="New render").first.click()
    page.get_by_role("heading", name="New render").wait_for()
    page.get_by_label("Or upload a job_spec.json").set_input_files(str(upload))
    page.get_by_text("1 segment · scene 2.00 s").wait_for()
    assert page.get_by_label("Job id").input_value() == spec["job_id"]
    page.get_by_label("Music", exact=False).uncheck()
    page.get_by_label("Resolution").select_option("360p")
    page.get_by_label("Preview (quick, at most 480p)").check()
    assert_accessible(page)
    page.get_by_role("button", name="Render").click()
    page.get_by_role("heading", name=f"Job {spec['job_id']}").wait_for()
    stored = json.loads(stores.blobs.read_bytes(f"gs://{settings.spec_bucket}/jobs/{spec['job_id']}.json"))
    assert stored["audio"]["tracks"]["music"] is False and stored["audio"]["tracks"]["sfx"] is True
    assert stored["output"]["resolution"] == "360p" and stored["output"]["preview"] is True
    assert stored["segments"] == spec["segments"] and stored["owner_uid"] == director.uid
    director.wait_status("COMPLETED", "FAILED")
    assert_accessible(page)


def test_the_accepted_spec_survives_a_refused_resubmission(stores: Clients, director: User, cloud: DevStack) -> None:
    """A resubmission while the job is still queued replaces the spec object and is refused by
    the spec function; the owner's GET still gives the spec the job was accepted from, so
    Re-render sends that one (not the refused one, and not nothing), and the job renders it.

    The workers are paused from before the first submission until the refusal is recorded, so
    the job is still QUEUED when the resubmission reaches the spec function: a condition the
    test holds, not a render it hopes is still running."""
    page = director.page
    job_id = f"survives-{uuid.uuid4().hex[:8]}"
    spec = {**short_spec(cloud, 1, job_id), "output": {"resolution": "360p"}}
    deadline = time.monotonic() + RENDER_TIMEOUT_MS / 1000
    with workers_paused(cloud):
        first = page.evaluate("s => window.scenerender.submit(s)", spec)
        # Accepted (the job document names this generation) before anything else is sent.
        while (doc := stores.jobs.get(job_id)) is None or doc.spec_generation != first["spec_generation"]:
            assert time.monotonic() < deadline and doc is None, doc
            time.sleep(0.1)
        assert doc.status == "QUEUED", doc
        refused_spec = {**spec, "scene_id": "refused-resubmission"}
        second = page.evaluate("s => window.scenerender.submit(s)", refused_spec)
        assert second["spec_generation"] != first["spec_generation"]
        while (doc := stores.jobs.get(job_id)) is None or (
            doc.resubmission_refused is None or doc.resubmission_refused.spec_generation != second["spec_generation"]
        ):
            assert time.monotonic() < deadline and doc is not None, doc
            assert doc.spec_generation == first["spec_generation"], doc
            time.sleep(0.1)
        assert doc.status == "QUEUED" and "still QUEUED" in doc.resubmission_refused.reason, doc
        owned = page.evaluate("id => window.scenerender.getJob(id)", job_id)
        assert owned["spec_generation"] == first["spec_generation"]
        assert owned["spec"] == {**spec, "owner_uid": director.uid}
    # The workers go on: the job renders the accepted spec, and its page offers Re-render with it.
    page.goto(f"{director.web}#/job/{job_id}")
    director.wait_status("COMPLETED", "FAILED")
    doc = stores.jobs.get(job_id)
    assert output_of(doc) and doc is not None and doc.spec_generation == first["spec_generation"], doc
    page.get_by_role("button", name="Re-render").wait_for()
    assert page.evaluate("id => window.scenerender.getJob(id)", job_id)["spec"]["scene_id"] == spec["scene_id"]
    assert director.errors == []


def test_an_old_job_documents_details_show_their_message(stores: Clients, browser: Any, web: str) -> None:
    """Job documents written before the contract's `{path, problem}` carry `{path, message}`:
    the page shows the words too, not the path alone, on the job page and in My renders."""
    user = User(browser, web)
    try:
        user.sign_up()
        page = user.page
        job_id = f"old-{uuid.uuid4().hex[:8]}"
        old = {"path": "segments[0].url", "message": "file not found: gs://media/a.mp4"}
        error = {"code": "INPUT_UNREACHABLE", "message": "an input could not be fetched", "details": [old]}
        fields = {"status": "FAILED", "stage": "fetch", "progress": 0.0, "owner_uid": user.uid, "error": error}
        # Written as such a document was stored (the job store's typed writes say `problem` now).
        stores.jobs.collection.document(job_id).create({**fields, "job_id": job_id, "created_at": datetime.now(UTC)})
        page.goto(f"{web}#/job/{job_id}")
        user.wait_status("FAILED", timeout=30_000)
        shown = page.locator("#job-state [data-error-code] .error-details li").all_inner_texts()
        assert shown == ["segments[0].url: file not found: gs://media/a.mp4"]
        page.get_by_role("link", name="My renders", exact=True).click()
        row = page.locator(f'li.job[data-job-id="{job_id}"] .error-details li')
        row.wait_for()
        assert row.all_inner_texts() == shown
        assert user.errors == []
    finally:
        user.close()


def test_my_renders_is_live_and_newest_first(stores: Clients, browser: Any, web: str) -> None:
    """My renders follows the user's jobs as they are written, with no reload and no request of
    its own: a new job appears at the top, and its row's bar and stage move with the worker's
    own progress writes (the job store's set_progress, as the worker calls it)."""
    user = User(browser, web)
    try:
        user.sign_up()
        page = user.page
        jobs = stores.jobs
        older, newer = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("older", "newer"))
        output = completed_output(f"gs://scenerender-renders/renders/{older}/r1/{older}.mp4", duration_s=8.0)
        done = JobDocument(status=JobStatus.COMPLETED, stage="done", progress=1.0, owner_uid=user.uid, output=output)
        assert jobs.create_job(older, done)
        page.locator(f'li.job[data-job-id="{older}"]').wait_for()
        assert "scene 8.0 s" in page.locator(f'li.job[data-job-id="{older}"] .job-meta').inner_text()
        marker = page.evaluate(OBSERVE)
        before = len(user.requests)
        assert jobs.create_job(newer, JobDocument.queued(owner_uid=user.uid))
        page.locator(f'li.job[data-job-id="{newer}"]').wait_for()
        assert page.locator("li.job").evaluate_all("rows => rows.map(r => r.dataset.jobId)") == [newer, older]
        jobs.mark_running(newer)
        row = page.locator(f'li.job[data-job-id="{newer}"]')
        for value in (0.25, 0.5, 0.75):
            jobs.set_progress(newer, "encode", value)
            row.locator(f'progress[data-progress="{value:.4f}"]').wait_for(timeout=30_000)
        assert row.get_attribute("data-status") == "RUNNING"
        assert "Stage: encode · 75 %" in row.locator(".job-stage").inner_text()
        assert page.evaluate("window.__document_marker") == marker
        asked = [r for r in user.requests[before:] if "google.firestore" not in r[2]]
        assert asked == [], asked  # nothing but the listener's channel
        assert user.errors == []
    finally:
        user.close()


def test_the_page_deploys_as_static_files_calling_the_api_on_its_own_origin(
    stores: Clients, browser: Any, web: str, cloud: DevStack, tmp_path: Path
) -> None:
    """docs/web.md's deploy: web/dist plus a config.json, on a plain static file server (as a
    bucket or Firebase Hosting serves it; Python's http.server here), with apiUrl the API's own
    URL, another origin: the browser's CORS checks pass, a job is submitted and followed, and
    Re-render gets its spec back (GET across origins too)."""
    from scenerender.dev.checkout import web_dist
    from scenerender.dev.procs import free_port

    dist = web_dist(stores.settings)
    assert dist is not None, "web/dist is not built: run scripts/setup.sh"
    site = tmp_path / "site"
    shutil.copytree(dist, site)
    api = cloud.env()["SCENERENDER_API_URL"]
    config = {**json.loads(cloud.web_config_path.read_text()), "apiUrl": api}
    (site / "config.json").write_text(json.dumps(config))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    user = None
    try:
        static = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(static, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the static server did not start"
            time.sleep(0.1)
        user = User(browser, static)
        user.sign_up()
        spec = short_spec(cloud, 1, f"static-{uuid.uuid4().hex[:8]}")
        user.new_render(spec)
        user.page.get_by_label("Resolution").select_option("360p")
        user.page.get_by_role("button", name="Render").click()
        user.page.get_by_role("heading", name=f"Job {spec['job_id']}").wait_for()
        user.wait_status("COMPLETED", "FAILED")
        assert output_of(stores.jobs.get(spec["job_id"]))
        user.page.get_by_role("button", name="Re-render").wait_for()
        to_api = [(m, u) for _, m, u in user.requests if u.startswith(api)]
        assert ("POST", f"{api}/") in to_api and ("GET", f"{api}/?job_id={spec['job_id']}") in to_api, to_api
        assert not [u for _, _, u in user.requests if u.startswith(static + "api")]
        assert user.errors == []
    finally:
        if user is not None:
            user.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_node_backend_renders_with_the_typed_client(
    stores: Clients, cloud: DevStack, web: str, tmp_path: Path
) -> None:
    """The typed client is importable outside the page: web/examples/backend.mjs bundles
    web/src/client.ts for Node (firebase's Node build, its Firestore over gRPC), signs a user
    up in the Auth emulator, submits through the API with the ID token, follows the job with
    `watch` and writes the MP4 with `download`."""
    job_id = f"backend-{uuid.uuid4().hex[:8]}"
    spec = {**short_spec(cloud, 1, job_id), "output": {"resolution": "360p"}}
    config = {**json.loads(cloud.web_config_path.read_text()), "apiUrl": cloud.env()["SCENERENDER_API_URL"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    email = f"backend-{uuid.uuid4().hex[:8]}@scenerender.test"
    out = tmp_path / "out.mp4"
    argv = ["node", str(Path(__file__).resolve().parents[2] / "web" / "examples" / "backend.mjs")]
    argv += [str(tmp_path / "config.json"), str(tmp_path / "spec.json"), email, PASSWORD, str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RENDER_TIMEOUT_MS / 1000, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    doc = stores.jobs.get(job_id)
    output = output_of(doc)
    assert doc is not None and result["job_id"] == job_id and doc.owner_uid == result["uid"]  # the token's user's
    assert result["statuses"][-1] == "COMPLETED" and len(result["statuses"]) >= 2, result  # followed, not read once
    assert result["bytes"] == output.size_bytes == out.stat().st_size
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out.mp4")] == ["out.mp4"]  # renamed, none left
    assert ffprobe_duration(out) == pytest.approx(output.duration_s, abs=0.05)

"""Fetching https inputs safely: a real HTTP server on loopback, names mapped by an injected resolver."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from scenerender.core.fetch import fetch_and_probe
from scenerender.core.inputs import FetchPolicy, InputResolver, address_refusal
from scenerender.core.spec import parse_spec
from scenerender.errors import InputRefusedError, InputUnreachableError

pytestmark = pytest.mark.integration
PAYLOAD = b"\x00media" * 1000
SERVER_IP = "127.0.0.2"  # the tests' "public" host; 127.0.0.1 plays the internal one


class Handler(http.server.BaseHTTPRequestHandler):
    drips_started: ClassVar[list[str]] = []
    drips_ended: ClassVar[dict[str, bool]] = {}  # path: whether every byte was sent

    def do_GET(self) -> None:
        if self.path.startswith("/drip/"):  # one distinct slow download per path
            self.drips_started.append(self.path)
            self.drips_ended[self.path] = self._drip()
            return
        routes = {
            "/media.mp4": lambda: self._send(200, PAYLOAD),
            "/hop": lambda: self._redirect("/media.mp4"),
            "/to-internal": lambda: self._redirect("http://internal.test/media.mp4"),
            "/to-file": lambda: self._redirect("file:///etc/passwd"),
            "/loop": lambda: self._redirect("/loop"),
            "/missing": lambda: self._send(404, b"no"),
            "/drip": self._drip,
        }
        routes.get(self.path, lambda: self._send(404, b""))()

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, where: str) -> None:
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _drip(self) -> bool:
        self.send_response(200)
        self.send_header("Content-Length", "400")
        self.end_headers()
        try:
            for _ in range(40):
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            return False  # the client gave up, as it should
        return True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer((SERVER_IP, 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def only_127_0_0_2(address: str) -> str | None:
    return None if address == SERVER_IP else address_refusal(address)


class Resolver:
    """Maps test names; ``rebinding.test`` answers the allowed address once, then an internal one."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host == "rebinding.test":
            return [SERVER_IP] if self.calls.count(host) == 1 else ["127.0.0.1"]
        return {
            "media.test": [SERVER_IP],
            "internal.test": ["127.0.0.1"],
            "meta.test": ["169.254.169.254"],
            "mapped.test": ["::ffff:127.0.0.1"],
            "decimal.test": ["2130706433"],
        }.get(host, [])


def resolver(tmp_path: Path, **policy: object) -> tuple[InputResolver, Resolver]:
    names = Resolver()
    settings = {"address_check": only_127_0_0_2, "allow_plain_http": True, **policy}
    return InputResolver(tmp_path, FetchPolicy(**settings), resolver=names), names  # type: ignore[arg-type]


def test_download_follows_a_checked_redirect(server: int, tmp_path: Path) -> None:
    fetch, _ = resolver(tmp_path)
    path = fetch.resolve(f"http://media.test:{server}/hop", "segments[0].url")
    assert path.read_bytes() == PAYLOAD and path.parent == tmp_path


def test_the_checked_address_is_the_one_connected_to(server: int, tmp_path: Path) -> None:
    fetch, names = resolver(tmp_path)
    path = fetch.resolve(f"http://rebinding.test:{server}/media.mp4", "segments[0].url")
    assert path.read_bytes() == PAYLOAD and names.calls == ["rebinding.test"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://internal.test:{port}/media.mp4", "loopback address 127.0.0.1"),
        ("http://meta.test:{port}/x", "link-local address 169.254.169.254"),
        ("http://mapped.test:{port}/x", "loopback address 127.0.0.1"),
        ("http://metadata.google.internal/computeMetadata/v1/", "not allowed"),
        ("http://media.test:{port}/to-internal", "loopback"),
        ("http://media.test:{port}/to-file", "redirect to a file URL"),
        ("http://media.test:{port}/loop", "more than 5 redirects"),
    ],
)
def test_refused_locations_name_the_input(server: int, tmp_path: Path, url: str, reason: str) -> None:
    fetch, _ = resolver(tmp_path)
    with pytest.raises(InputRefusedError) as info:
        fetch.resolve(url.format(port=server), "audio.clips[1].url")
    assert info.value.input_path == "audio.clips[1].url" and reason in info.value.reason
    assert list(tmp_path.iterdir()) == []


def test_default_policy_refuses_plain_http_and_private_addresses(tmp_path: Path) -> None:
    fetch = InputResolver(tmp_path, FetchPolicy())
    for url in ("http://example.com/a.mp4", "ftp://x/a", "data:video/mp4;base64,AAAA", "concat:a|b", "file:///a"):
        with pytest.raises(InputRefusedError):
            fetch.resolve(url, "segments[0].url")
    with pytest.raises(InputRefusedError, match="loopback"):
        fetch.resolve("https://127.0.0.1/a.mp4", "segments[0].url")
    with pytest.raises(InputRefusedError, match="loopback"):
        fetch.resolve("https://2130706433/a.mp4", "segments[0].url")  # decimal-encoded 127.0.0.1
    with pytest.raises(InputRefusedError, match="local paths"):
        fetch.resolve("clips/a.wav", "audio.clips[0].url")


def test_missing_slow_and_oversized_downloads(server: int, tmp_path: Path) -> None:
    fetch, _ = resolver(tmp_path, total_timeout_s=1.0, max_bytes=len(PAYLOAD) - 1)
    with pytest.raises(InputUnreachableError, match="HTTP 404"):
        fetch.resolve(f"http://media.test:{server}/missing", "segments[0].url")
    with pytest.raises(InputRefusedError, match="bytes; the limit"):
        fetch.resolve(f"http://media.test:{server}/media.mp4", "segments[0].url")
    started = time.monotonic()
    with pytest.raises(InputUnreachableError, match="longer than 1 s"):
        fetch.resolve(f"http://media.test:{server}/drip", "segments[0].url")
    assert time.monotonic() - started < 3
    assert list(tmp_path.iterdir()) == []


def test_a_stopped_resolver_ends_its_download_at_the_next_chunk(server: int, tmp_path: Path) -> None:
    fetch, _ = resolver(tmp_path)
    outcome: list[BaseException] = []

    def download() -> None:
        try:
            fetch.resolve(f"http://media.test:{server}/drip", "segments[0].url")
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=download)
    worker.start()
    time.sleep(0.3)
    fetch.stop()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert isinstance(outcome[0], InputUnreachableError) and "download stopped" in outcome[0].reason
    assert list(tmp_path.iterdir()) == []  # no partial download left


def test_a_failed_input_ends_the_downloads_in_flight_and_starts_no_more(server: int, tmp_path: Path) -> None:
    """segments[0] is missing; the twelve slow ones after it are not fetched to the end for nothing."""
    urls = [f"http://media.test:{server}/missing", *(f"http://media.test:{server}/drip/{i}" for i in range(12))]
    spec = {
        "version": 1,
        "project_id": "p",
        "scene_id": "s",
        "segments": [{"id": f"s{i}", "url": url} for i, url in enumerate(urls)],
    }
    fetch, _ = resolver(tmp_path)
    Handler.drips_started.clear()
    Handler.drips_ended.clear()
    with pytest.raises(InputUnreachableError, match="HTTP 404") as info:
        fetch_and_probe(parse_spec(json.dumps(spec).encode()), fetch, "ffprobe")
    assert info.value.input_path == "segments[0].url"
    # Four fetch threads: the three started beside the missing one, and at most one more
    # taken before the error reached the caller; the other eight never start.
    assert 1 <= len(Handler.drips_started) <= 4, Handler.drips_started
    deadline = time.monotonic() + 10
    while len(Handler.drips_ended) < len(Handler.drips_started) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Those in flight were dropped at their next chunk, not read to the end.
    assert Handler.drips_ended and not any(Handler.drips_ended.values()), Handler.drips_ended
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]

"""The web client on the local cloud: its static files, its ``config.json``, and the API beside it.

``scenerender dev up`` runs ``python -m scenerender.dev.webserve`` as one of its processes. It serves
``web/dist`` (built by ``scripts/setup.sh``), ``/config.json`` from the file the stack wrote (the
emulators' hosts, the project id: public values only), and proxies ``/api/...`` to the HTTP API
function, so the page calls the API on its own origin. Deployed, the page calls the API at its
own URL, across origins (CORS; docs/web.md, and test_web's static deploy test does the same
here). The sample scenes the page offers are published here too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import urllib.parse
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scenerender.settings import Settings

if TYPE_CHECKING:
    from scenerender.ports import Blobs

# Request headers the API needs from the page; everything else (cookies among them) stays here.
FORWARDED = ("Authorization", "Content-Type", "Content-Length", "Accept")
API_PREFIX = "/api"
MAX_BODY = 8 * 1024 * 1024  # above any spec the API accepts: its own limit answers with a located error


def web_config(
    settings: Settings, *, auth_host: str | None, firestore_host: str, samples: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The page's config.json on the local cloud. Only public values: a page's config is readable by anyone."""
    return {
        # The emulators accept any API key; a real project's web config goes here in the cloud.
        "firebase": {"apiKey": "fake-api-key", "projectId": settings.project_id, "authDomain": "127.0.0.1"},
        "apiUrl": API_PREFIX,
        "emulators": {"firestore": firestore_host, **({"auth": auth_host} if auth_host else {})},
        "googleSignIn": settings.web_google_sign_in,
        "collections": {"jobs": settings.jobs_collection, "batches": settings.batches_collection},
        "samples": samples or [],
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    # Temp file then rename: the server may read it at any moment.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def sample_specs(
    settings: Settings, blobs: Blobs | None = None, *, segments: int = 6, seconds: float = 2.0
) -> list[dict[str, Any]]:
    """Make the sample scene's media, upload it under ``samples/`` in the media bucket (through
    ``blobs``, default the settings' own store), return the page's samples.

    The specs name each segment's length, so the page can show the scene's duration unprobed.
    """
    from scenerender.cloud.clients import Clients
    from scenerender.core.probe import probe
    from scenerender.dev.sample import make_sample_scene

    name = "harbour-night"
    prefix = f"gs://{settings.media_bucket}/samples/{name}"
    with tempfile.TemporaryDirectory(prefix="scenerender-samples-") as tmp:
        spec_path = make_sample_scene(
            Path(tmp), segments=segments, seconds=seconds, job_id=name, ffmpeg=settings.ffmpeg
        )
        store = blobs or Clients(settings).blobs
        spec: dict[str, Any] = json.loads(spec_path.read_text())
        for local in sorted((Path(tmp) / "media").iterdir()):
            store.upload_file(local, f"{prefix}/{local.name}", content_type="application/octet-stream")
        for clip in spec["audio"]["clips"]:
            # The whole file, its length measured: the page shows each track's length from it.
            if not clip.get("loop"):
                clip["duration"] = round(probe(Path(tmp) / clip["url"], input_path=clip["url"]).audio_duration, 3)
            clip["url"] = f"{prefix}/{Path(clip['url']).name}"
    for segment in spec["segments"]:
        segment["url"] = f"{prefix}/{Path(segment['url']).name}"
        segment["duration"] = seconds
    del spec["job_id"]  # each render from the page gets its own id
    del spec["output"]["filename"]
    return [{"name": name, "title": f"Harbour at night ({segments} segments, {segments * seconds:g} s)", "spec": spec}]


class WebHandler(SimpleHTTPRequestHandler):
    """Static files, config.json, and /api/ to the HTTP API."""

    def __init__(self, *args: Any, config_path: Path, api_url: str, **kwargs: Any) -> None:
        self.config_path = config_path
        self.api = urllib.parse.urlsplit(api_url)
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the stack's logs

    def end_headers(self) -> None:
        # A rebuilt page is picked up on reload; nothing here is worth caching locally.
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith(API_PREFIX + "/") or path == API_PREFIX:
            return self._proxy()
        if path == "/config.json":
            body = self.config_path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        return super().do_GET()

    def do_POST(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def _proxy(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        if not (split.path.startswith(API_PREFIX + "/") or split.path == API_PREFIX):
            self.send_error(405)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else None
        target = (self.api.path.rstrip("/") + split.path[len(API_PREFIX) :]) or "/"
        if split.query:
            target += "?" + split.query
        headers = {k: v for k in FORWARDED if (v := self.headers.get(k)) is not None}
        conn = http.client.HTTPConnection(self.api.hostname or "127.0.0.1", self.api.port or 80, timeout=60)
        try:
            conn.request(self.command, target, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            self.send_error(502, f"the API does not answer: {exc}")
            return
        finally:
            conn.close()
        self.send_response(response.status)
        for key in ("Content-Type", "Retry-After", "WWW-Authenticate"):
            if value := response.getheader(key):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(root: Path, config_path: Path, api_url: str, port: int, host: str = "127.0.0.1") -> None:
    handler = partial(WebHandler, directory=str(root), config_path=config_path, api_url=api_url)
    with ThreadingHTTPServer((host, port), handler) as server:
        server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, required=True, help="The built page (checkout.web_dist).")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--api", required=True, help="the HTTP API's base URL")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.root, args.config, args.api, args.port)


if __name__ == "__main__":
    main()

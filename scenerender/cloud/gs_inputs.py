"""gs:// inputs for a render on the user's own machine, with no Google library loaded until one is met.

``scenerender render`` reads its inputs from local paths and https:// far more often than from
gs://. google-cloud-storage brings grpc, requests, cryptography and protobuf with it: 27 MB
of the CLI's resident memory and a third of its import time, held through a render's peak
beside the ffmpeg encodes (docs/performance.md, "Memory: Python, not ffmpeg"). This module
imports nothing of Google's, so the local render path can hand a downloader to
``core.inputs.InputResolver`` without them; ``scenerender.cloud.storage`` is imported when the
first gs:// input is fetched (``tests/integration/test_render_imports.py`` pins that it is not before).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from scenerender.errors import SceneRenderError
from scenerender.settings import Settings

if TYPE_CHECKING:
    from scenerender.cloud.storage import GcsBlobStore

CREDENTIALS_HINT = (
    "no Google credentials to read gs:// inputs: run `gcloud auth application-default login`, "
    "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file "
    "(or STORAGE_EMULATOR_HOST=HOST:PORT to read from a local GCS emulator)"
)


def lazy_gs_download(settings: Settings) -> Callable[[str, Path, int], None]:
    """A gs:// downloader for ``core.inputs.InputResolver`` whose store is made on its first
    use: a render with no gs:// input needs no Google credentials, and loads no Google library."""
    made: list[GcsBlobStore] = []

    def download(uri: str, dest: Path, max_bytes: int) -> None:
        if not made:
            # Lazy on purpose: the import is the cost this module exists to avoid (see above).
            from google.auth.exceptions import DefaultCredentialsError

            from scenerender.cloud.storage import GcsBlobStore

            try:
                made.append(GcsBlobStore(settings))
            except DefaultCredentialsError as exc:
                # A user's own machine, most often: say how to authenticate, not what google.auth raised.
                raise SceneRenderError(CREDENTIALS_HINT) from exc
        made[0].download(uri, dest, max_bytes=max_bytes)

    return download

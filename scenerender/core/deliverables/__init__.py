"""What a render delivers beside the MP4: captions, a poster, a contact sheet, stems, a QC report.

``render`` burns captions (``burn``: in the segments' encodes, or after the render where
they are copied; before the output is measured) and runs a ``Maker``: started from the sources while the audio is made
(the copy path), finished on the finished MP4 before it is published. Each
sidecar is made in the render's private dir and moved beside the MP4 only with it, named
``<mp4 stem><suffix>`` (``SUFFIXES``). The contract side is docs/deliverables.md.

By concern: ``sidecars`` (names, content types, publishing), ``maker`` (what is made when,
beside the audio or on the MP4), ``burn`` (captions burned in), and what each makes:
``captions``, ``stills`` (poster, contact sheet, the report's frames), ``roles`` (the mix's
roles: stems and levels), ``qc`` (the findings).
"""

from __future__ import annotations

from scenerender.core.deliverables.burn import BURN_BLOCKER, burn_captions, caption_script, check_glyphs
from scenerender.core.deliverables.maker import Maker, source_samples
from scenerender.core.deliverables.sidecars import (
    CONTENT_TYPES,
    SUFFIXES,
    Deliverables,
    caption_formats,
    content_type,
    sidecar_path,
)

__all__ = [
    "BURN_BLOCKER",
    "CONTENT_TYPES",
    "SUFFIXES",
    "Deliverables",
    "Maker",
    "burn_captions",
    "caption_formats",
    "caption_script",
    "check_glyphs",
    "content_type",
    "sidecar_path",
    "source_samples",
]

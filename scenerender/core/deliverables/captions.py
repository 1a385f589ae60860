"""Captions from the script: one cue per narration/dialogue clip that has ``text``. Pure.

Times come from the timeline (where each clip really sounds, after probing, trims, loops
and auto-sequencing), never from the spec's numbers. A cue never overlaps the next: it
ends where the next begins. A text longer than two lines of 42 columns is shown as
consecutive cues over the clip, each of at most two lines, timed by their share of the
text. East Asian wide characters count two columns (a line holds 21 of them).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from scenerender.core.spec import SPEECH_TYPES, JobSpec
from scenerender.core.timeline import Timeline

LINE_COLUMNS = 42
MAX_LINES = 2
SPEAKER_MAX_COLUMNS = 20  # a longer name is still shown whole, but wrapping reserves no more for it


@dataclass(frozen=True)
class Cue:
    clip_index: int  # audio.clips[i] the cue is for
    start: float  # scene seconds
    end: float
    speaker: str | None
    lines: tuple[str, ...]  # at most MAX_LINES, the speaker label not included

    @property
    def path(self) -> str:
        return f"audio.clips[{self.clip_index}]"


def columns(text: str) -> int:
    """Display width: East Asian wide and fullwidth characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _tokens(text: str) -> list[tuple[str, bool]]:
    """Words, and each wide character on its own (CJK has no spaces to break at); each with
    whether a space came before it."""
    tokens: list[tuple[str, bool]] = []
    word, spaced = "", False
    for ch in text:
        if ch.isspace():
            if word:
                tokens.append((word, spaced))
            word, spaced = "", True
        elif unicodedata.east_asian_width(ch) in ("W", "F"):
            if word:
                tokens.append((word, spaced))
                spaced = False
            tokens.append((ch, spaced))
            word, spaced = "", False
        else:
            word += ch
    if word:
        tokens.append((word, spaced))
    return tokens


def wrap(text: str, width: int = LINE_COLUMNS, first_width: int | None = None) -> list[str]:
    """Greedy wrap by display columns; a token wider than a line is cut."""
    lines: list[str] = []
    line = ""
    for token, spaced in _tokens(text):
        limit = first_width if first_width is not None and not lines else width
        candidate = token if not line else line + (" " if spaced else "") + token
        if columns(candidate) <= limit:
            line = candidate
            continue
        if line:
            lines.append(line)
            line = ""
        limit = width if lines else (first_width if first_width is not None else width)
        while columns(token) > limit:
            cut = 0
            while columns(token[: cut + 1]) <= limit:
                cut += 1
            lines.append(token[:cut])
            token = token[cut:]
            limit = width
        line = token
    if line:
        lines.append(line)
    return lines


def build_cues(spec: JobSpec, timeline: Timeline) -> list[Cue]:
    """The cues of the rendered scene, in time order, none overlapping the next."""
    scene_end = float(timeline.duration)
    pieces: list[Cue] = []
    for placed in sorted(timeline.clips, key=lambda c: (c.start, c.index)):
        clip = spec.audio.clips[placed.index]
        if placed.type not in SPEECH_TYPES or not clip.text or not clip.text.strip():
            continue
        speaker = clip.character.name.strip() if clip.character is not None else None
        reserve = min(columns(speaker) + 2, SPEAKER_MAX_COLUMNS) if speaker else 0
        lines = wrap(" ".join(clip.text.split()), LINE_COLUMNS, LINE_COLUMNS - reserve)
        start, end = placed.start, min(placed.end, scene_end)
        chunks = [tuple(lines[i : i + MAX_LINES]) for i in range(0, len(lines), MAX_LINES)]
        weights = [max(1, sum(columns(line) for line in chunk)) for chunk in chunks]
        total, done = sum(weights), 0
        for n, (chunk, weight) in enumerate(zip(chunks, weights, strict=True)):
            a = start + (end - start) * done / total
            done += weight
            b = start + (end - start) * done / total
            pieces.append(Cue(placed.index, a, b, speaker if n == 0 else None, chunk))
    # A cue ends where the next begins. Two that begin together (overlapping speech) share
    # the time until the sooner one would end: the first shows for half of it.
    cues: list[Cue] = []
    for cue in pieces:
        if cues and cue.start < cues[-1].end:
            last = cues[-1]
            if cue.start - last.start < 0.001:
                middle = last.start + (min(last.end, cue.end) - last.start) / 2
                cue = Cue(cue.clip_index, middle, cue.end, cue.speaker, cue.lines)
                cues[-1] = Cue(last.clip_index, last.start, middle, last.speaker, last.lines)
            else:
                cues[-1] = Cue(last.clip_index, last.start, cue.start, last.speaker, last.lines)
        cues.append(cue)
    return [c for c in cues if c.end - c.start >= 0.001]


def _stamp(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def to_srt(cues: list[Cue]) -> str:
    """SubRip: the speaker as a ``Name:`` prefix on the cue's first line."""
    blocks = []
    for n, cue in enumerate(cues, start=1):
        lines = list(cue.lines)
        if cue.speaker:
            lines[0] = f"{cue.speaker}: {lines[0]}"
        blocks.append(f"{n}\n{_stamp(cue.start, ',')} --> {_stamp(cue.end, ',')}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: list[Cue]) -> str:
    """WebVTT: the speaker as a voice span (``<v Name>``), which players may show or style."""
    blocks = ["WEBVTT\n"]
    for n, cue in enumerate(cues, start=1):
        text = "\n".join(_vtt_escape(line) for line in cue.lines)
        if cue.speaker:
            # A voice annotation ends at ">": the name is escaped like text.
            text = f"<v {_vtt_escape(cue.speaker)}>{text}</v>"
        blocks.append(f"{n}\n{_stamp(cue.start, '.')} --> {_stamp(cue.end, '.')}\n{text}\n")
    return "\n".join(blocks)


ASS_NEWLINE = "\\N"
CAPTION_FONT = "DejaVu Sans"  # fonts-dejavu-core; CJK falls back to Droid Sans Fallback (fonts-droid-fallback)


def _ass_text(text: str) -> str:
    # Braces open override blocks and a backslash starts an escape in ASS: neither may come from the script.
    return text.replace("\\", "\u29f5").replace("{", "\uff5b").replace("}", "\uff5d")


def _ass_stamp(seconds: float) -> str:
    cs = max(0, round(seconds * 100))
    hours, cs = divmod(cs, 360_000)
    minutes, cs = divmod(cs, 6000)
    secs, cs = divmod(cs, 100)
    return f"{hours}:{minutes:02d}:{secs:02d}.{cs:02d}"


def to_ass(cues: list[Cue], width: int, height: int, *, font: str = CAPTION_FONT) -> str:
    """The cues as an ASS script for libass (burned captions): white, outlined, bottom centre."""
    size = max(12, round(height * 0.055))
    margin = max(8, round(height * 0.06))
    header = (
        "[Script Info]\nScriptType: v4.00+\nWrapStyle: 2\nScaledBorderAndShadow: yes\n"
        f"PlayResX: {width}\nPlayResY: {height}\n\n"
        "[V4+ Styles]\n"
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
        "Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
        "MarginL, MarginR, MarginV, Encoding\n"
        f"Style: Default,{font},{size},&H00FFFFFF,&H00FFFFFF,&H00000000,&H80000000,0,0,0,0,100,100,0,0,1,"
        f"{max(1, size // 14)},0,2,{margin},{margin},{margin},1\n\n"
        "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
    )
    events = []
    for cue in cues:
        lines = [_ass_text(line) for line in cue.lines]
        if cue.speaker:
            lines[0] = f"{_ass_text(cue.speaker)}: {lines[0]}"
        text = ASS_NEWLINE.join(lines)
        events.append(f"Dialogue: 0,{_ass_stamp(cue.start)},{_ass_stamp(cue.end)},Default,,0,0,0,,{text}")
    return header + "\n".join(events) + "\n"

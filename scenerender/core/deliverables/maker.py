"""``Maker``: one render's sidecars and quality report, scheduled beside the audio and on the finished MP4."""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from scenerender.core import plan
from scenerender.core.deliverables import captions, qc, roles, stills
from scenerender.core.deliverables.sidecars import Deliverables, caption_formats
from scenerender.core.ffmpeg import FFmpegRunner, write_files
from scenerender.core.mp4 import VideoSample, video_samples
from scenerender.core.spec import SPEECH_TYPES, JobSpec
from scenerender.core.timeline import Timeline
from scenerender.errors import ErrorDetail, QcFailedError


def source_samples(timeline: Timeline) -> list[VideoSample]:
    """The copy path's output sample table, before the output exists: the concat demuxer
    copies each source's packets, so the output's samples are its sources', each segment's
    from its start. Empty when a source's tables cannot be read (then the output's are)."""
    tables: dict[Path, list[VideoSample]] = {}
    samples: list[VideoSample] = []
    for seg in timeline.segments:
        path = seg.source.path
        if path not in tables:
            tables[path] = video_samples(path)
        if not tables[path]:
            return []
        start, length = float(seg.start), float(seg.duration)
        samples += [VideoSample(start + s.time_s, s.size, s.key) for s in tables[path] if s.time_s < length - 1e-6]
    return samples


class Maker:
    """The sidecars and the quality report of one render, made in two parts.

    ``start_from_sources`` (the copy path, nothing burned in: the output's picture is its
    sources' packets) starts at once, while the audio is made, what needs no output: the
    poster and sheet from the sources joined, the report's frames from each distinct source,
    and the mix's roles. ``finish`` does the rest on the finished MP4 (everything, when nothing started
    early). ``close`` waits for what was started; call it whatever happened.
    """

    def __init__(self, spec: JobSpec, timeline: Timeline, work: Path, runner: FFmpegRunner) -> None:
        self.spec, self.timeline, self.runner = spec, timeline, runner
        self.out_dir = work / "deliverables"
        self.out_dir.mkdir(exist_ok=True)
        self.made = Deliverables()
        self.speaks = any(c.type in SPEECH_TYPES for c in timeline.clips)
        self.role_outputs: list[roles.RoleOutput] = []
        if self.speaks:
            self.role_outputs += [
                roles.RoleOutput(roles.SPEECH, self.out_dir / "speech.f32", levels=True),
                roles.RoleOutput(roles.MUSIC, self.out_dir / "music.f32", levels=True),
                # The whole mix, for silence where speech is placed when the output's own
                # audio need not be decoded (``finish``).
                roles.RoleOutput(roles.EVERYTHING, self.out_dir / "mix.f32", levels=True),
            ]
        if spec.output.stems:
            self.role_outputs += [
                roles.RoleOutput(role, self.out_dir / f"stem-{role.name}.wav", levels=False)
                for role in roles.STEM_ROLES
            ]
        self.frames: list[qc.Frame] = []
        self.samples: list[VideoSample] = []
        self.scan: list[plan.LoudnessScan] = []
        # The report's frames, the stills and the roles, two at a time (one ffmpeg thread each).
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="deliverables")
        self._picture: list[Future[None]] = []
        self._from_sources = False  # the picture is read from the sources (start_from_sources)
        self._jobs = runner  # what the pool's jobs run with (start_from_sources lowers it)
        self._roles: Future[None] | None = None

    def _timed(self, name: str, job: Callable[[], object]) -> None:
        began = time.monotonic()
        job()
        self.made.timings[name] = round(time.monotonic() - began, 3)

    def _stills_job(self, source: list[str]) -> None:
        self._timed("stills_s", lambda: self._stills(source))

    def _stills(self, source: list[str]) -> None:
        spec, timeline, out_dir = self.spec, self.timeline, self.out_dir
        keyframes = [s.time_s for s in self.samples if s.key]
        duration = float(timeline.duration)
        candidates = [] if spec.output.poster_at is not None else stills.poster_candidates(keyframes, duration)
        tiles = stills.sheet_times(timeline, keyframes) if keyframes else []
        if candidates or tiles:
            argv, files = stills.picture_pass(source, timeline, poster_times=candidates, tile_times=tiles, work=out_dir)
            write_files(files)
            self._jobs.run(argv)
        if tiles:
            self.made.files["contact_sheet"] = out_dir / "sheet.jpg"
        poster = out_dir / "poster.jpg"
        if candidates:
            chosen = _choose_poster(out_dir, len(candidates))
            if chosen is None:
                # Every candidate of the middle is black: the same over the whole scene.
                wider = stills.evenly(keyframes)
                argv, files = stills.picture_pass(source, timeline, poster_times=wider, tile_times=[], work=out_dir)
                write_files(files)
                self._jobs.run(argv)
                chosen = _choose_poster(out_dir, len(wider), brightest=True)
            assert chosen is not None
            (out_dir / f"cand-{chosen + 1:02d}.jpg").replace(poster)
        else:
            at = spec.output.poster_at if spec.output.poster_at is not None else duration / 2
            at = min(at, max(0.0, duration - 1 / float(timeline.fps)))
            if self._from_sources:
                # The frame of the segment's own file (a seek through the concat demuxer is not exact).
                seg = next((s for s in timeline.segments if at < float(s.start + s.duration)), timeline.segments[-1])
                source, at = stills.picture_input(seg.source.path), at - float(seg.start)
            self._jobs.run(stills.frame_command(source, at, poster))
        self.made.files["poster"] = poster

    def _qc_frames_job(self, mp4: Path | None) -> None:
        self._timed("qc_frames_s", lambda: self._qc_frames(mp4))

    def _qc_frames(self, mp4: Path | None) -> None:
        """The report's frames, on the scene's clock: of ``mp4``; without it (the copy path), of
        each distinct source once (a shot used twice is decoded once), placed where its
        segments are."""
        timeline = self.timeline
        files = [mp4] if mp4 is not None else list(dict.fromkeys(seg.source.path for seg in timeline.segments))
        grey = self.out_dir / "qc.grey"
        argv = stills.qc_frames_command([stills.picture_input(f) for f in files], grey)
        times = stills.parse_frame_times(self._jobs.capture_stderr(argv), len(files))
        size = stills.QC_SIZE[0] * stills.QC_SIZE[1]
        blob = grey.read_bytes()
        fps = float(timeline.fps)
        by_file: dict[Path, list[qc.Frame]] = {}
        offset = 0
        for path, stamps in zip(files, times, strict=True):
            # On each file's own clock and the frame grid: a demuxer's times start at the
            # container's first timestamp (B-frame delay), the sample table's at the first frame.
            count = min(len(stamps), len(blob) // size - offset)
            by_file[path] = [
                qc.Frame(round((t - stamps[0]) * fps) / fps, blob[(offset + i) * size : (offset + i + 1) * size])
                for i, t in enumerate(stamps[:count])
            ]
            offset += count
        if mp4 is not None:
            self.frames = by_file[mp4]
            return
        frames: list[qc.Frame] = []
        for seg in timeline.segments:
            start, length = float(seg.start), float(seg.duration)
            frames += [qc.Frame(start + f.time, f.grey) for f in by_file[seg.source.path] if f.time < length - 1e-6]
        self.frames = frames

    def _roles_job(self) -> None:
        if not self.role_outputs:
            return
        stems = self.spec.output.stems

        def run() -> None:
            command = roles.roles_command(
                self.timeline, self.role_outputs, self.out_dir / "roles.filtergraph", scan=stems
            )
            write_files(command.files)
            log = self._jobs.capture_stderr(command.argv)
            if stems:
                self.scan.append(plan.parse_ebur128(log))

        self._timed("roles_s", run)

    def start_from_sources(self) -> None:
        """Start the picture pass over the sources and the roles (see the class)."""
        # Beside the audio, which is the render's longest part: these take the CPU it leaves.
        self._jobs = self.runner.lowered()
        samples = source_samples(self.timeline)
        if not samples:
            self._roles = self._pool.submit(self._roles_job)
            return
        listing = self.out_dir / "picture.ffconcat"
        parts = [plan.VideoPart(seg.source.path, seg.duration) for seg in self.timeline.segments]
        write_files({listing: plan.concat_list(parts)})
        self.samples, self._from_sources = samples, True
        # The shortest first, so that it is not the one left running when the audio is done.
        self._roles = self._pool.submit(self._roles_job)
        self._picture = [
            self._pool.submit(self._qc_frames_job, None),
            self._pool.submit(self._stills_job, stills.sources_input(listing)),
        ]

    def finish(
        self,
        mp4: Path,
        *,
        loudness_lufs: float | None,
        true_peak_db: float | None = None,
        mix_gain: plan.MixGain | None = None,
        missing_glyphs: frozenset[int] = frozenset(),
    ) -> Deliverables:
        """Every sidecar the spec asks for and the quality report, from the finished (not yet
        published) ``mp4``; ``QcFailedError`` when a finding is one ``qc.fail_on`` names.
        ``missing_glyphs``: what ``burn_captions`` burned as empty boxes.

        ``mix_gain``: the gain the mix was brought to its loudness with (the stems take it);
        without it (audio reused from the cache), the output's measured ``loudness_lufs``
        against the mix's tells it. ``true_peak_db``: the output's, as measured.

        The output's audio is decoded only when it could clip (a true peak at 0 dBTP or over:
        no sample can reach full scale under it) or the gain its mix took is not known;
        otherwise silence is looked for in the mix's levels at that gain.
        """
        spec, timeline, out_dir, made = self.spec, self.timeline, self.out_dir, self.made
        # What the early jobs ran beside is done: the render waits for them now (on a shared
        # machine, lowered, they would wait for everyone else's work).
        self._jobs.restore_priority()
        started = time.monotonic()
        cues = captions.build_cues(spec, timeline)
        for kind in caption_formats(spec):
            path = out_dir / f"captions.{kind}"
            write_files({path: captions.to_vtt(cues) if kind == "vtt" else captions.to_srt(cues)})
            made.files[kind] = path
        made.timings["captions_s"] = round(time.monotonic() - started, 3)
        if not self._picture:
            self.samples = video_samples(mp4)
            self._picture = [
                self._pool.submit(self._qc_frames_job, mp4),
                self._pool.submit(self._stills_job, stills.picture_input(mp4)),
            ]
        if self._roles is None:
            self._roles = self._pool.submit(self._roles_job)
        gain_db = mix_gain.gain_db if mix_gain is not None else (0.0 if timeline.loudness is None else None)
        can_clip = true_peak_db is None or true_peak_db >= 0.0
        decode = can_clip or (self.speaks and gain_db is None)
        # The levels silence is looked for in: the output's own, or the mix's at its gain.
        levels_file = out_dir / "output.f32" if decode else out_dir / "mix.f32"
        peaks = array("f")
        if decode:
            began = time.monotonic()
            peaks = roles.parse_peaks(self.runner.capture_stderr(roles.output_levels_command(mp4, levels_file)))
            made.timings["qc_audio_s"] = round(time.monotonic() - began, 3)
        began = time.monotonic()
        for future in (*self._picture, self._roles):
            future.result()
        made.timings["waited_s"] = round(time.monotonic() - began, 3)

        began = time.monotonic()
        findings = qc.picture_findings(self.frames, self.samples, timeline, stills.QC_SIZE)
        # Only the output's peaks are looked at (clipping): astats found them at full rate.
        output_levels = (
            roles.read_levels(levels_file, rate=roles.LEVEL_RATE, channels=1, peaks=False)
            if levels_file.exists()
            else roles.Levels(rate=roles.LEVEL_RATE, samples=array("f"), peaks=array("f"))
        )
        output_levels.peaks = peaks
        speech, music = (
            (
                roles.read_levels(out_dir / f"{role}.f32", rate=roles.LEVEL_RATE, channels=1, peaks=False)
                for role in ("speech", "music")
            )
            if self.speaks
            else (None, None)
        )
        findings += qc.sound_findings(
            spec, timeline, cues, output_levels, speech, music, output_gain_db=0.0 if decode else gain_db or 0.0
        )
        findings += qc.glyph_findings(timeline, cues, missing_glyphs)
        made.qc = qc.report(spec, findings)
        made.timings["qc_s"] = round(time.monotonic() - began, 3)
        if made.qc["failed"]:
            failing = [f for f in made.qc["findings"] if f["severity"] == "error"]
            raise QcFailedError(
                f"quality check failed: {failing[0]['message']}"
                + (f" (and {len(failing) - 1} more)" if len(failing) > 1 else ""),
                details=[ErrorDetail(f"qc.fail_on ({f['check']})", f["message"]) for f in failing],
            )
        if spec.output.stems:
            began = time.monotonic()
            self._encode_stems(loudness_lufs, mix_gain)
            made.timings["stems_s"] = round(time.monotonic() - began, 3)
        return made

    def _encode_stems(self, loudness_lufs: float | None, mix_gain: plan.MixGain | None) -> None:
        # The stems at the very gain the mix took: they add up to it (where a limiter acted
        # on the mix, they hold the peaks it took off: docs/deliverables.md).
        scan = self.scan[0] if self.scan else None
        if mix_gain is not None:
            gain = mix_gain.gain_db
        elif self.timeline.loudness is not None and scan and loudness_lufs is not None and not scan.silent:
            gain = loudness_lufs - scan.integrated_lufs
        else:
            gain = 0.0
        stems = [o for o in self.role_outputs if not o.levels]
        outs = [self.out_dir / f"stem-{o.role.name}.flac" for o in stems]
        self.runner.run(roles.stem_encode_command([o.path for o in stems], gain, outs))
        for o, out in zip(stems, outs, strict=True):
            self.made.files[f"stem_{o.role.name}"] = out

    def close(self) -> None:
        """Wait for what was started (a failed render cancels its runner first: soon)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _choose_poster(out_dir: Path, count: int, *, brightest: bool = False) -> int | None:
    width, height = stills.ANALYSIS_SIZE
    grey = (out_dir / "cand.grey").read_bytes()
    size = width * height
    stats = [stills.frame_stats(grey[i * size : (i + 1) * size], width, height) for i in range(len(grey) // size)]
    chosen = stills.choose_poster(stats)
    if chosen is None and brightest and stats:
        chosen = max(range(len(stats)), key=lambda i: stats[i].mean_luma)
    return chosen if chosen is None or chosen < count else None

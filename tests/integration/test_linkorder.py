"""ffmpeg's libraries preloaded in lookup order: the loader binds every symbol as before, searches
fewer libraries for it, and a render gives the very same file; a stale order is never used."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenerender import linkorder
from scenerender.ffmpeg import FFmpegRunner
from scenerender.probe import probe_data
from scenerender.settings import Settings
from tests import mediagen
from tests.cli import render_json

# The test's own reading of the loader's trace, apart from the module's.
TRACED_BINDING = re.compile(r"binding file (\S+) \[0\] to (\S+) \[0\]: \w+ symbol `([^']+)'")


def trace(binary: str, what: str, env: dict[str, str] | None) -> str:
    base = {k: v for k, v in (env or os.environ).items() if k != "LD_DEBUG"}
    done = subprocess.run(
        [binary, "-version"], env={**base, "LD_DEBUG": what}, capture_output=True, text=True, check=True
    )
    return done.stderr


def bound(binary: str, env: dict[str, str] | None) -> dict[tuple[str, str], str]:
    return {(user, symbol): lib for user, lib, symbol in TRACED_BINDING.findall(trace(binary, "bindings", env))}


def scope_of(binary: str, env: dict[str, str] | None) -> list[str]:
    """The libraries in the order the loader searches them (the binary first)."""
    lines = trace(binary, "scopes", env).splitlines()
    return next(line.split(" scope 0: ")[1].split() for line in lines if " scope 0: " in line)


def mean_search_depth(binary: str, env: dict[str, str] | None) -> float:
    """Libraries the loader tries per symbol: the position of the one it is found in."""
    scope = scope_of(binary, env)
    position = {lib: i for i, lib in enumerate(scope)}
    found = bound(binary, env).values()
    depths = [position[lib] for lib in found if lib in position]  # the vDSO is outside any scope
    return sum(depths) / len(depths)


@pytest.fixture
def order_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "link-order"
    monkeypatch.setenv(linkorder.DIR_ENV, str(directory))
    for variable in linkorder.CALLER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    linkorder._preload.cache_clear()
    yield directory
    linkorder._preload.cache_clear()


def ffprobe() -> str:
    resolved = linkorder.resolve("ffprobe")
    assert resolved is not None
    return resolved


def test_the_order_binds_every_symbol_where_it_was_and_searches_far_fewer_libraries(order_dir: Path) -> None:
    binary = ffprobe()
    assert linkorder.environment(binary) is None  # nothing computed yet: started as always
    assert linkorder.main([binary]) == 0
    env = linkorder.environment(binary)
    assert env is not None and env["LD_PRELOAD"]

    without, with_order = bound(binary, None), bound(binary, env)
    assert len(without) > 10_000  # Debian's build: tens of thousands
    assert with_order == without
    # Debian's ffprobe: 89 libraries tried per symbol without the order, 24 with it.
    depth_without, depth_with = mean_search_depth(binary, None), mean_search_depth(binary, env)
    assert depth_with < depth_without / 2, (depth_without, depth_with)
    # Exactly the libraries the binary loads anyway, none added, none left out.
    loaded = set(scope_of(binary, None)[1:])
    preloaded = set(env["LD_PRELOAD"].split(":"))
    assert preloaded == {lib for lib in loaded if "ld-linux" not in lib}


def test_a_stale_order_or_the_callers_own_loader_variables_are_not_used(
    order_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = ffprobe()
    linkorder.main([binary])
    record_path = next(order_dir.glob("*.json"))
    record = json.loads(record_path.read_text())
    assert linkorder.environment(binary) is not None

    # A library upgraded since (another size): the order may not hold for it.
    upgraded = json.loads(json.dumps(record))
    upgraded["libraries"][5][1][0] += 1
    record_path.write_text(json.dumps(upgraded))
    linkorder._preload.cache_clear()
    assert linkorder.environment(binary) is None
    # `python -m scenerender.linkorder` (setup) sees it and computes it again.
    linkorder.main([binary])
    linkorder._preload.cache_clear()
    assert linkorder.environment(binary) is not None

    # The binary itself replaced.
    replaced = json.loads(record_path.read_text())
    replaced["identity"][1] -= 1
    record_path.write_text(json.dumps(replaced))
    linkorder._preload.cache_clear()
    assert linkorder.environment(binary) is None

    # The loader's cache rebuilt (ldconfig): a library may now be found elsewhere.
    rebuilt = json.loads(json.dumps(record))
    rebuilt["loader_cache"][1] -= 1
    record_path.write_text(json.dumps(rebuilt))
    linkorder._preload.cache_clear()
    assert linkorder.environment(binary) is None

    record_path.write_text("{not json")
    linkorder._preload.cache_clear()
    assert linkorder.environment(binary) is None

    record_path.write_text(json.dumps(record))
    linkorder._preload.cache_clear()
    assert linkorder.environment(binary) is not None
    for variable in ("LD_PRELOAD", "LD_LIBRARY_PATH"):
        with monkeypatch.context() as caller:
            caller.setenv(variable, "")
            assert linkorder.environment(binary) is None


def test_setup_reports_a_binary_it_cannot_order_and_goes_on(
    order_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert linkorder.main(["no-such-ffmpeg-here", ffprobe()]) == 0
    out, err = capsys.readouterr()
    assert "no-such-ffmpeg-here: not found" in err
    assert "libraries ordered" in out
    assert linkorder.main([ffprobe()]) == 0
    assert "up to date" in capsys.readouterr().out


def test_the_settings_document_the_variable_the_module_reads() -> None:
    assert Settings.env_name("link_order_dir") == linkorder.DIR_ENV


def test_ffmpeg_and_ffprobe_start_with_the_order_and_a_render_is_the_same_file(
    order_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    for i in range(2):
        mediagen.make_video(media / f"s{i}.mp4", width=640, height=360, fps=30, duration=1.0, tone=300 + 100 * i)
    mediagen.make_tone_burst(media / "line.wav", duration=0.5, freq=1000)
    spec = tmp_path / "job_spec.json"
    spec.write_text(
        json.dumps(
            {
                "version": 1,
                "project_id": "p",
                "scene_id": "s",
                "output": {"resolution": "360p", "fps": 30},
                "segments": [{"id": f"s{i}", "url": f"media/s{i}.mp4"} for i in range(2)],
                "audio": {"clips": [{"type": "dialogue", "url": "media/line.wav", "segment_id": "s1"}]},
            }
        )
    )
    plain = render_json(spec, tmp_path / "plain.mp4")
    linkorder.main([])
    ordered = render_json(spec, tmp_path / "ordered.mp4")
    assert plain["fast_path"] and ordered["fast_path"]

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest(tmp_path / "ordered.mp4") == digest(tmp_path / "plain.mp4")

    # The runner and the probes hand the order to the processes they start.
    seen: list[dict[str, str] | None] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: object, **kwargs: object) -> object:
        env = kwargs.get("env")
        seen.append(env if isinstance(env, dict) else None)
        return real_popen(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    FFmpegRunner().capture_stderr(["ffmpeg", "-f", "lavfi", "-i", "nullsrc=d=0.1", "-f", "null", "-"])
    probe_data(media / "s0.mp4", input_path="segments[0].url")
    assert len(seen) == 2
    assert all(env is not None and env["LD_PRELOAD"] for env in seen)

"""Issue #24: every mistake a new user can make, answered at once, through the installed
`scenerender` as a subprocess: its exit code, the located path of the problem, and the
contract's JSON form (`{"error": {"code", "message", "details": [{"path", "problem"}]}}` on
stdout, same exit code). None of these needs the local cloud."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli_run import SCENERENDER, bare_env, run
from tests.mediagen import make_tone_burst, make_video

pytestmark = pytest.mark.integration


def write(folder: Path, spec: dict[str, Any], name: str = "job_spec.json") -> Path:
    path = folder / name
    path.write_text(json.dumps({"version": 1, "project_id": "p", "scene_id": "s", **spec}))
    return path


def json_error(done: Any, code: str) -> dict[str, Any]:
    """The error object on stdout; checks the code and that nothing else is there."""
    doc = json.loads(done.stdout)
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message", "details"}, doc
    assert doc["error"]["code"] == code, doc
    assert all(set(d) == {"path", "problem"} for d in doc["error"]["details"]), doc
    assert "Traceback" not in done.stderr
    return dict(doc["error"])


def problems(error: dict[str, Any]) -> dict[str, str]:
    return {d["path"]: d["problem"] for d in error["details"]}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    make_video(folder / "a.mp4", width=320, height=180, fps=25, duration=2.0)
    make_tone_burst(folder / "line.wav", freq=800, duration=1.0)
    return folder


def test_static_and_cross_reference_errors_in_one_round_with_did_you_mean(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        {
            "output": {"resolutoin": "720p"},
            "segments": [{"id": "a", "url": "a.mp4", "volume": "loud"}, {"id": "a", "url": "b.mp4"}],
            "audio": {"clips": [{"type": "dialogue", "url": "d.wav", "segment_id": "seg-9"}]},
        },
    )
    for args in ([], ["--probe"]):
        done = run("validate", spec, *args, "--json")
        assert done.returncode == 2, done.stderr
        found = problems(json_error(done, "INVALID_SPEC"))
        assert found["output.resolutoin"] == "unknown field (did you mean `resolution`?)"
        assert found["segments[0].volume"] == "Input should be a valid number"
        assert found["segments[1].id"] == 'duplicate id "a" (also segments[0])'
        assert found["audio.clips[0].segment_id"] == 'no segment "seg-9"'
    text = run("validate", spec)
    assert text.returncode == 2 and text.stdout == ""
    assert "output.resolutoin: unknown field (did you mean `resolution`?)" in text.stderr
    assert 'audio.clips[0].segment_id: no segment "seg-9"' in text.stderr


def test_probe_found_errors_come_with_the_static_ones(media: Path) -> None:
    spec = write(
        media,
        {
            "output": {"resolution": "360p", "colour": "warm"},
            "segments": [{"id": "a", "url": "a.mp4", "duration": 5}, {"id": "b", "url": "a.mp4", "trim_start": 10}],
            "audio": {
                "clips": [
                    {"type": "sfx", "url": "line.wav", "start": 30},
                    {"type": "narration", "url": "line.wav", "duration": 3},
                    {"type": "music", "url": "missing.wav"},
                ]
            },
        },
        "probe-errors.json",
    )
    done = run("validate", spec, "--probe", "--json")
    assert done.returncode == 2, done.stderr
    found = problems(json_error(done, "INVALID_SPEC"))
    assert found["output.colour"] == "unknown field"
    assert found["segments[0].duration"].startswith("5 s is longer than the source (2.000 s")
    assert found["segments[1].trim_start"].startswith("10 s is past the end of the source")
    assert found["audio.clips[0].start"].startswith("starts at 30.000 s, at or after the end of the video")
    assert found["audio.clips[1].duration"].startswith("3 s is longer than the source (1.000 s")
    assert found["audio.clips[2].url"] == f"file not found: {media / 'missing.wav'}"
    # render finds the same problems in the same round, and writes nothing
    out = media / "never.mp4"
    rendered = run("render", spec, "-o", out, "--json")
    assert rendered.returncode == 2 and problems(json_error(rendered, "INVALID_SPEC")) == found
    assert not out.exists()


def test_gs_inputs_without_google_credentials_name_the_input_and_how_to_authenticate(
    media: Path, tmp_path: Path
) -> None:
    spec = write(
        media,
        {
            "segments": [{"id": "a", "url": "a.mp4"}, {"id": "b", "url": "gs://media/scene-42/seg-1.mp4"}],
            "audio": {"clips": [{"type": "narration", "url": "gs://media/narr.mp3"}]},
        },
        "gs-inputs.json",
    )
    env = bare_env(HOME=str(tmp_path))  # no ~/.config/gcloud application default credentials either
    commands: list[list[str | Path]] = [["validate", spec, "--probe"], ["render", spec, "-o", tmp_path / "x.mp4"]]
    for command in commands:
        done = run(*command, "--json", env=env)
        assert done.returncode == 3, done.stderr
        found = problems(json_error(done, "INPUT_UNREACHABLE"))
        assert set(found) == {"segments[1].url", "audio.clips[0].url"}
        for problem in found.values():
            assert "gcloud auth application-default login" in problem and "GOOGLE_APPLICATION_CREDENTIALS" in problem
        assert "DefaultCredentialsError" not in done.stderr


def test_output_paths_are_checked_before_anything_is_fetched(media: Path, tmp_path: Path) -> None:
    # The input is an https URL nothing serves: had anything been fetched, the error would be exit 3.
    spec = write(tmp_path, {"segments": [{"id": "a", "url": "https://127.0.0.1:9/never.mp4"}]}, "scene-7.json")
    (tmp_path / "taken.mp4").write_bytes(b"keep me")
    cases = [
        ("newdir/", "folder does not exist: newdir/ (create it first, or name a file)"),
        (str(tmp_path / "nowhere" / "x.mp4"), f"folder does not exist: {tmp_path / 'nowhere'}"),
        ("/proc/scene.mp4", "cannot write in /proc (permission denied or read-only)"),
        (str(tmp_path / "taken.mp4"), f"{tmp_path / 'taken.mp4'} exists; pass --force to replace it"),
    ]
    for output, problem in cases:
        done = run("render", spec, "-o", output, "--json", cwd=tmp_path)
        assert done.returncode == 2, (output, done.stderr)
        assert problems(json_error(done, "INVALID_SPEC")) == {"--output": problem}
    assert not (tmp_path / "newdir").exists() and (tmp_path / "taken.mp4").read_bytes() == b"keep me"


def test_a_work_folder_that_cannot_be_used_is_named_with_its_setting(media: Path, tmp_path: Path) -> None:
    spec = write(media, {"segments": [{"id": "a", "url": "a.mp4"}]}, "workless.json")
    (tmp_path / "a-file").write_bytes(b"")
    for folder, why in ((tmp_path / "gone", "No such file or directory"), (tmp_path / "a-file", "Not a directory")):
        done = run("render", spec, "-o", tmp_path / "x.mp4", "--json", env=bare_env(SCENERENDER_WORK_DIR=str(folder)))
        assert done.returncode == 1, done.stderr
        message = json_error(done, "INTERNAL")["message"]
        assert message == (
            f"no private work folder can be made in {folder} (SCENERENDER_WORK_DIR): {why}; "
            "name an existing folder this process may write to"
        )
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "gone").exists()


def test_a_folder_output_is_named_as_in_the_pipeline_and_never_overwritten_without_force(
    media: Path, tmp_path: Path
) -> None:
    spec = write(media, {"segments": [{"id": "a", "url": "a.mp4", "duration": 0.5}]}, "scene-9.json")
    out_dir = tmp_path / "renders"
    out_dir.mkdir()
    first = run("render", spec, "-o", out_dir, "--json")
    assert first.returncode == 0, first.stderr
    # No job_id in the spec: JOB_ID defaults to the spec file's name, as `submit` names the job.
    assert json.loads(first.stdout)["output"] == str(out_dir / "scene-9.mp4")
    again = run("render", spec, "-o", out_dir, "--json")
    assert again.returncode == 2
    refused = [(d["path"], d["problem"]) for d in json_error(again, "INVALID_SPEC")["details"]]
    assert ("--output", f"{out_dir / 'scene-9.mp4'} exists; pass --force to replace it") in refused
    for sidecar in out_dir.glob("scene-9.*"):  # whatever sidecars the render wrote beside it
        if sidecar.suffix != ".mp4":
            sidecar.unlink()
    (out_dir / "scene-9.mp4").unlink()
    (out_dir / "scene-9.srt").write_text("an earlier render's captions")
    over_sidecar = run("render", spec, "-o", out_dir, "--json")
    assert over_sidecar.returncode == 2
    assert problems(json_error(over_sidecar, "INVALID_SPEC")) == {
        "--output": f"{out_dir / 'scene-9.srt'} exists; pass --force to replace it"
    }
    forced = run("render", spec, "-o", f"{out_dir}/", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    named = write(media, {"output": {"filename": "final.mp4"}, "segments": [{"id": "a", "url": "a.mp4"}]}, "n.json")
    assert run("validate", named).returncode == 0
    assert json.loads(run("render", named, "-o", out_dir, "--json").stdout)["output"] == str(out_dir / "final.mp4")


def test_validate_takes_batch_files_and_locates_errors_in_their_scenes(media: Path) -> None:
    scene = {"version": 1, "project_id": "p", "scene_id": "s", "segments": [{"id": "a", "url": "a.mp4"}]}
    batch = media / "batch.json"
    batch.write_text(json.dumps({"version": 1, "batch_id": "b-1", "scenes": [scene, scene]}))
    done = run("validate", batch, "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"valid": True, "batch_id": "b-1", "scenes": 2}
    assert run("validate", batch, "--probe").returncode == 0
    bad_scene = {**scene, "segmnets": [], "segments": [{"id": "a", "url": "a.mp4", "duration": 9}]}
    batch.write_text(json.dumps({"version": 1, "batch_id": "b-1", "scenes": [scene, bad_scene]}))
    static = run("validate", batch, "--json")
    assert static.returncode == 2
    assert problems(json_error(static, "INVALID_SPEC")) == {
        "scenes[1].segmnets": "unknown field (did you mean `segments`?)"
    }
    del bad_scene["segmnets"]
    batch.write_text(json.dumps({"version": 1, "batch_id": "b-1", "scenes": [scene, bad_scene]}))
    probed = run("validate", batch, "--probe", "--json")
    assert probed.returncode == 2
    assert list(problems(json_error(probed, "INVALID_SPEC"))) == ["scenes[1].segments[0].duration"]


def test_a_byte_order_mark_is_accepted_and_duplicate_keys_are_refused(media: Path) -> None:
    body = {"version": 1, "project_id": "p", "scene_id": "s", "segments": [{"id": "a", "url": "a.mp4"}]}
    bom = media / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(body).encode())
    done = run("validate", bom, "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"valid": True}
    dup = media / "dup.json"
    dup.write_text(json.dumps(body)[:-1] + ', "scene_id": "other"}')
    done = run("validate", dup, "--json")
    assert done.returncode == 2
    assert problems(json_error(done, "INVALID_SPEC")) == {
        "scene_id": "key given more than once (JSON keeps only one: which one you meant is unclear)"
    }


def test_help_is_clean() -> None:
    for command in (["render"], ["validate"], ["submit"], ["watch"], ["dev", "up"]):
        done = run(*command, "--help", env=bare_env(COLUMNS="200"))
        assert done.returncode == 0 and "<bool>" not in done.stdout, done.stdout
    up = run("dev", "up", "--help", env=bare_env(COLUMNS="200")).stdout
    from scenerender.dev.functions import FUNCTIONS

    assert f"First of {len(FUNCTIONS)} consecutive ports for the functions" in up and "three" not in up


def test_usage_errors_are_json_too() -> None:
    done = run("render", "spec.json", "--json")  # -o missing
    assert done.returncode == 2
    error = json_error(done, "INVALID_SPEC")
    assert error["details"][0]["path"] == "--output" and "Missing option" in error["message"]
    missing = run("validate", "no-such.json", "--json")
    assert missing.returncode == 2
    assert problems(json_error(missing, "INVALID_SPEC")) == {"SPEC": "no such file: no-such.json"}


def test_submit_names_missing_local_files_before_it_needs_a_cloud(tmp_path: Path) -> None:
    spec = write(tmp_path, {"segments": [{"id": "a", "url": "nothere.mp4"}, {"id": "b", "url": "sub/x.mp4"}]})
    done = run("submit", spec, "--json", cwd=tmp_path, env=bare_env())
    assert done.returncode == 3, done.stderr
    assert problems(json_error(done, "INPUT_UNREACHABLE")) == {
        "segments[0].url": f"file not found: {tmp_path / 'nothere.mp4'}",
        "segments[1].url": f"file not found: {tmp_path / 'sub' / 'x.mp4'}",
    }
    assert "FileNotFoundError" not in done.stderr
    scene = {"version": 1, "project_id": "p", "scene_id": "s", "segments": [{"id": "a", "url": "gone.mp4"}]}
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"version": 1, "batch_id": "b-2", "scenes": [scene]}))
    done = run("submit", batch, "--json", cwd=tmp_path, env=bare_env())
    assert done.returncode == 3, done.stderr
    assert problems(json_error(done, "INPUT_UNREACHABLE")) == {
        "scenes[0].segments[0].url": f"file not found: {tmp_path / 'gone.mp4'}"
    }


def test_no_cloud_is_exit_1_at_once_saying_to_run_dev_up(media: Path, tmp_path: Path) -> None:
    spec = write(media, {"segments": [{"id": "a", "url": "a.mp4"}]}, "cloudless.json")
    closed = {
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
    }
    for env in (bare_env(), bare_env(**closed)):  # no stack here; a stack since stopped (its variables left)
        for command in (["submit", spec, "--wait"], ["watch", "some-job"]):
            started = time.monotonic()
            done = run(*command, "--json", cwd=tmp_path, env=env)
            took = time.monotonic() - started
            assert done.returncode == 1, done.stderr
            error = json_error(done, "INTERNAL")
            assert "scenerender dev up" in error["message"]
            assert took < 10, took  # one process start and a refused connect, not the clients' 120 s retry


def test_watch_of_an_invalid_id_is_exit_2() -> None:
    done = run("watch", "a/b", "--json", env=bare_env())
    assert done.returncode == 2
    assert list(problems(json_error(done, "INVALID_SPEC"))) == ["ID"]


def test_the_health_check_takes_well_under_two_seconds() -> None:
    from scenerender.cloud.health import require_cloud
    from scenerender.errors import CloudUnavailableError

    started = time.monotonic()
    with pytest.raises(CloudUnavailableError) as info:
        require_cloud({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:9", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}, "x")
    assert time.monotonic() - started < 2.0
    assert [d.path for d in info.value.details] == ["STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"]
    assert sys.executable and os.path.exists(SCENERENDER)


def test_a_preview_is_h264_high_and_a_silent_scene_reports_null_loudness(media: Path, tmp_path: Path) -> None:
    import subprocess

    spec = write(media, {"output": {"preview": True, "resolution": "720p"}, "segments": [{"id": "a", "url": "a.mp4"}]})
    out = tmp_path / "preview.mp4"
    done = run("render", spec, "-o", out, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["height"] == 480  # a preview is at most 480p
    assert result["loudness_lufs"] is None and result["true_peak_db"] is None  # no clip, segment muted
    profile = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "stream=profile", "-of", "csv=p=0", out],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert profile == "High"

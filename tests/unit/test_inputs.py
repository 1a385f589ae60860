"""Local inputs: linked into the render's private dir, once per file however it is named."""

from __future__ import annotations

import threading
from pathlib import Path

from scenerender.core.inputs import FetchPolicy, InputResolver


def test_one_file_named_two_ways_at_once_is_linked_once(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "clip.mp4").write_bytes(b"\x00" * 64)
    (media / "alias.mp4").symlink_to(media / "clip.mp4")
    work = tmp_path / "work"
    work.mkdir()
    policy = FetchPolicy(local_base=tmp_path)
    # Each probe thread has the resolver of the render; many spellings of one file race.
    resolver = InputResolver(work, policy)
    names = ["media/clip.mp4", "media/alias.mp4", "media/../media/clip.mp4", str(media / "clip.mp4")] * 4
    start = threading.Barrier(len(names))
    found: list[Path] = []
    errors: list[BaseException] = []

    def resolve(name: str, index: int) -> None:
        start.wait()
        try:
            found.append(resolver.resolve(name, f"segments[{index}].url"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=resolve, args=(n, i)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(found)) == 1 and len(list(work.iterdir())) == 1
    assert next(iter(found)).resolve() == (media / "clip.mp4").resolve()

"""The segment encode's settings against plain x264 veryfast at crf 20: picture, CPU, size.

    .venv/bin/python benchmarks/bench_encode.py

Seven kinds of picture, each 5 s of 720p25 H.264 (like a generated segment), are brought to
1080p30 the way a normalised segment is (scale, fps) and encoded twice, taking turns: with
plain ``veryfast`` at crf 20 (the baseline: the picture scenerender promises) and with
scenerender's own settings (``plan.EncodeSettings.full``, the encoder options of a full render). Each
output's PSNR and SSIM are measured against its source scaled with no encode in between.
Prints a table and the ratios, and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# bench_render also puts the project root on the path, for the test suite's picture meter.
from bench_render import ROOT, ffmpeg, timed

from scenerender.core import plan
from tests.measure import picture_quality

PICTURES = {
    "test pattern (testsrc2)": "testsrc2=s=1280x720:r=25:d=5",
    "film grain": "testsrc2=s=1280x720:r=25:d=5,noise=alls=12:allf=t",
    "light grain, slow pan": "testsrc2=s=1280x720:r=25:d=5,noise=alls=4:allf=t,scroll=h=0.002",
    "light grain, fast pan": "testsrc2=s=1280x720:r=25:d=5,noise=alls=3:allf=t,scroll=h=0.02:v=0.01",
    "fractal zoom (mandelbrot)": "mandelbrot=s=1280x720:r=25,trim=duration=5",
    "fine moving detail (life)": "life=s=1280x720:r=25:mold=10:ratio=0.1:death_color=#C83232:life_color=#00ff00,"
    "trim=duration=5",
    "gradients": "gradients=s=1280x720:r=25:d=5:speed=0.05",
}
BASELINE = plan.EncodeSettings(preset="veryfast", crf=20)
UPSCALE = "scale=1920:1080,setsar=1,fps=30,format=yuv420p"


@dataclass
class Encode:
    cpu_s: float
    psnr_db: float
    ssim: float
    mb: float


def encode(source: Path, out: Path, enc: plan.EncodeSettings) -> Encode:
    # One thread, like a segment encode beside the others on a busy machine.
    decode = ["-threads", "1", "-i", str(source), "-filter_threads", "1", "-vf", UPSCALE]
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", *decode, *enc.encoder_args(), "-threads", "1", str(out)]
    _, cpu = timed(f"encode {out.name}", argv, None)
    psnr, ssim = picture_quality(out, [source], width=1920, height=1080, fps="30")
    return Encode(round(cpu, 2), psnr, ssim, round(out.stat().st_size / 1e6, 2))


def main() -> None:
    ours = plan.EncodeSettings.full()
    results: dict[str, dict[str, Encode]] = {}
    with tempfile.TemporaryDirectory(prefix="scenerender-bench-encode-") as tmp:
        work = Path(tmp)
        for name, graph in PICTURES.items():
            source = work / "source.mp4"
            ffmpeg(
                "-f", "lavfi", "-i", graph, "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(source)
            )
            results[name] = {
                "baseline": encode(source, work / "baseline.mp4", BASELINE),
                "scenerender": encode(source, work / "ours.mp4", ours),
            }
    print(f"baseline: veryfast crf 20; scenerender: {ours.preset} crf {ours.crf:g} {ours.x264_params}")
    print("each column: baseline, then scenerender; CPU ratio: baseline / scenerender")
    print(f"{'picture':<28} {'PSNR dB':>15} {'SSIM':>15} {'CPU s':>11} {'MB':>11}  CPU ratio")
    for name, pair in results.items():
        base, mine = pair["baseline"], pair["scenerender"]
        print(
            f"{name:<28} {base.psnr_db:>7.2f} {mine.psnr_db:>7.2f} {base.ssim:>7.4f} {mine.ssim:>7.4f}"
            f" {base.cpu_s:>5.2f} {mine.cpu_s:>5.2f} {base.mb:>5.2f} {mine.mb:>5.2f}  {base.cpu_s / mine.cpu_s:.2f}x"
        )
    worst_psnr = min(p["scenerender"].psnr_db - p["baseline"].psnr_db for p in results.values())
    worst_ssim = min(p["scenerender"].ssim - p["baseline"].ssim for p in results.values())
    cpu = sum(p["baseline"].cpu_s for p in results.values()) / sum(p["scenerender"].cpu_s for p in results.values())
    size = sum(p["scenerender"].mb for p in results.values()) / sum(p["baseline"].mb for p in results.values())
    print(
        f"scenerender against the baseline: PSNR at worst {worst_psnr:+.2f} dB, SSIM at worst {worst_ssim:+.4f}, "
        f"baseline/scenerender CPU {cpu:.2f}x, size {size:.2f}x"
    )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"encode-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps({k: {kk: asdict(vv) for kk, vv in v.items()} for k, v in results.items()}, indent=2)
    )


if __name__ == "__main__":
    main()

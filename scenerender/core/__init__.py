"""The render core: a spec into an MP4 on this machine, with no cloud in sight.

spec (parse + validate) -> probe/inputs (what the media are) -> timeline (where everything
sits) -> plan (ffmpeg argument lists) -> ffmpeg (the one runner) -> render (the whole trip).
Imports only the shared bottom (errors, settings, logs); never the cloud or the pipeline.
"""

"""SceneRender: one scene of an AI film project into a finished MP4."""

__version__ = "0.1.0"

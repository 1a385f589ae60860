"""All configuration in one class, read from the environment.

The environment variable names are declared here once, and this is the only module that
reads the process environment (tests/unit/test_settings_only.py): the rest of the package
takes a ``Settings`` (or clients made from one) as an argument, and a child process is
given its environment as a dict (``child_env``), never by changing this process's.

The environment variable names are declared here once. Terraform sets the same names on
the functions and the renderer job, and the tests read them from this class, so the
three cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SEVEN_DAYS_S = 7 * 24 * 3600

# Variables every deployed component needs; Terraform must set each of them.
REQUIRED_IN_CLOUD: tuple[str, ...] = (
    "project_id",
    "region",  # the renderer job's resource path is built from it
    "renderer_job",  # empty would leave every job QUEUED: nothing would start a render
    "spec_bucket",
    "render_bucket",
    "render_topic",
    "render_subscription",
    "completion_topic",
    "segment_topic",
    "segment_subscription",
)


class Settings(BaseSettings):
    """SceneRender settings. Every field is read from ``SCENERENDER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="SCENERENDER_", frozen=True, extra="ignore")

    project_id: str = Field("scenerender-local", description="GCP project that holds everything.")
    region: str = Field("europe-west1", description="Region of the Cloud Run job and functions.")
    spec_bucket: str = Field("scenerender-specs", description="Bucket where clients drop jobs/*.json.")
    render_bucket: str = Field(
        "scenerender-renders",
        description="Bucket for finished MP4s; never the spec bucket, so outputs cannot re-trigger jobs.",
    )
    media_bucket: str = Field("scenerender-media", description="Bucket for source media (demo, uploads).")
    spec_topic: str = Field("scenerender-spec-events", description="Topic of the spec bucket's notifications.")
    render_topic: str = Field("scenerender-render-requests", description="Topic of render requests.")
    render_subscription: str = Field(
        "scenerender-render-requests-worker", description="Pull subscription the renderer drains."
    )
    completion_topic: str = Field("scenerender-render-reports", description="Topic of renderer reports.")
    segment_topic: str = Field(
        "scenerender-segment-work", description="Topic of segment encodes a scene shares with other workers."
    )
    segment_subscription: str = Field(
        "scenerender-segment-work-worker", description="Pull subscription workers take shared segment encodes from."
    )
    split_min_segments: int = Field(
        4,
        ge=0,
        description="A scene with at least this many segments to encode shares them with other workers (0: never).",
    )
    batch_refresh_s: float = Field(
        2.0, ge=0, description="A rendering worker refreshes its batch's summary at most this often."
    )
    idle_exit_s: float = Field(
        20.0, gt=0, description="A renderer task with nothing to do for this long exits (job mode)."
    )
    dead_letter_topic: str = Field(
        "scenerender-render-dead-letter", description="Where render requests go after max attempts."
    )
    renderer_job: str = Field(
        "",
        description="Cloud Run job started per render request (empty: a local worker drains the queue).",
    )
    local_executions_dir: str = Field(
        "",
        description="Local cloud only, with no renderer_job: an execution is a set of worker processes "
        "started and tracked here (empty: long-running local workers drain the queue, nothing is launched).",
    )
    launch_parallelism: int = Field(
        1,
        ge=1,
        le=1000,
        description="Most tasks one execution of the renderer runs: a launch for N queued scenes asks for "
        "min(N, this) tasks (jobs.run taskCount override). Terraform sets it from the job's parallelism.",
    )
    launch_grace_s: float = Field(
        120.0,
        gt=0,
        description="The sweeper leaves a launch this young alone (its execution may not be listed yet).",
    )
    start_deadline_s: float = Field(
        1800.0,
        gt=0,
        description="A job launched this long ago whose execution never started (quota, image) ends FAILED/TIMEOUT.",
    )
    sweep_interval_s: float = Field(
        120.0,
        ge=0,
        description="How often the sweeper runs: Cloud Scheduler's schedule in the cloud (terraform/sweeper.tf), "
        "the local cloud's scheduler process locally (scenerender.scheduler; 0: none, tests call the sweeper).",
    )
    max_launches: int = Field(
        5, ge=1, le=100, description="Executions launched for one job before the sweeper gives it up as FAILED/TIMEOUT."
    )
    task_timeout_s: int = Field(
        0,
        ge=0,
        description="The renderer task's timeout (Terraform: the job's); a worker takes no request whose "
        "estimated render does not fit in the time left (0: no limit).",
    )
    task_exit_file: str = Field(
        "", description="Local executions only: where the worker writes its exit status (set by the launcher)."
    )
    jobs_collection: str = Field("render_jobs", description="Firestore collection of job documents.")
    batches_collection: str = Field("render_batches", description="Firestore collection of batches.")
    signed_url_ttl_s: int = Field(
        24 * 3600, ge=60, le=SEVEN_DAYS_S, description="Lifetime of download URLs (V4 allows 7 days at most)."
    )
    signer_service_account: str = Field(
        "", description="Service account that signs URLs through IAM signBlob when no key file is present."
    )
    signing_endpoint: str = Field(
        "", description="api_access_endpoint for signed URLs (the GCS emulator's address locally)."
    )
    allowed_gs_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Buckets inputs may be read from (empty: any bucket)."
    )
    shared_media_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="gs:// prefixes every user's spec may read (e.g. gs://media/shared/), besides the user's own "
        "users/{uid}/ in the media bucket; anything else is refused (empty: only the user's own media).",
    )
    refusals_collection: str = Field(
        "render_refusals",
        description="Firestore collection of refused bucket drops (another owner's id, an unusable object name); "
        "read by the backends that drop specs, never by end users.",
    )
    owners_collection: str = Field(
        "render_owners",
        description="Firestore collection of each user's reserved job slots (the per-owner cap, taken "
        "atomically; scenerender.cloud.owner_slots); read by the API only, never by end users.",
    )
    max_spec_bytes: int = Field(1024 * 1024, ge=1, description="Largest job_spec.json accepted.")
    max_batch_bytes: int = Field(
        4 * 1024 * 1024, ge=1, description="Largest batch file accepted (read from the object's metadata first)."
    )
    max_scene_s: float = Field(1800.0, gt=0, description="Longest scene rendered, in seconds (the whole timeline).")
    max_pixel_seconds: float = Field(
        1920 * 1080 * 1800.0,
        gt=0,
        description="Largest output width x height x scene seconds (default: 30 min of 1080p, 7.5 min of 2160p).",
    )
    max_segments: int = Field(500, ge=1, description="Most segments in one scene.")
    max_clips: int = Field(1000, ge=0, description="Most audio clips in one scene.")
    max_input_bytes: int = Field(
        2 * 1024**3,
        ge=1,
        description="Largest single input file fetched; in the pipeline also no more than the memory budget "
        "leaves (scenerender.pipeline.budget: /tmp is memory on Cloud Run).",
    )
    # The HTTP API (scenerender.pipeline.api): end users, each signed in with a Firebase ID token.
    max_api_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1, description="Largest HTTP API request body; a larger one is refused with 413."
    )
    max_active_jobs_per_owner: int = Field(
        20, ge=1, description="Jobs one user may have QUEUED or RUNNING at once; more are refused with 429."
    )
    upload_url_ttl_s: int = Field(
        900, ge=60, le=SEVEN_DAYS_S, description="Lifetime of the signed PUT URLs POST /uploads returns."
    )
    web_google_sign_in: bool = Field(
        False,
        description="The local web page offers Google sign-in (the Auth emulator's fake Google; the "
        "Firebase SDK's popup loads Google's script from apis.google.com, so it needs the internet).",
    )
    max_attempts: int = Field(5, ge=1, le=100, description="Render attempts before a job is failed.")
    lease_s: int = Field(60, ge=10, le=600, description="Ack deadline the worker keeps extending while it renders.")
    heartbeat_s: float = Field(10.0, gt=0, description="How often a rendering worker beats on its job.")
    heartbeat_stale_s: float = Field(
        45.0, gt=0, description="A RUNNING job without a beat for this long has lost its worker and may be taken over."
    )
    stuck_after_s: float = Field(
        1800.0,
        gt=0,
        description="A RUNNING job without a heartbeat for this long has no worker and no redelivery left: failed.",
    )
    render_timeout_s: int = Field(3600, ge=1, description="Longest a single render may run.")
    fetch_timeout_s: float = Field(30.0, gt=0, description="Connect/read timeout of one HTTP fetch.")
    watch_grace_s: float = Field(
        15.0,
        ge=0,
        description="`scenerender watch` of an id whose spec exists waits this long for its job to appear "
        "(NOT_FOUND after); with neither job nor spec it answers NOT_FOUND at once.",
    )
    work_dir: str = Field("", description="Where private temp dirs are made (empty: the system temp dir).")
    segment_cache: bool = Field(True, description="Reuse normalised segments already encoded with the same inputs.")
    deliverables: bool = Field(
        True, description="Captions, poster, contact sheet, stems and the QC report (false: the MP4 only; benchmarks)."
    )
    parallel_aac: bool = Field(
        True,
        description="With the video only copied, share the AAC encode among one encoder per core, joined frame "
        "by frame (docs/performance.md); false: one encoder.",
    )
    cache_dir: str = Field("", description="Local renders' segment cache (empty: ~/.cache/scenerender/segments).")
    parallelism: int = Field(0, ge=0, description="Segments normalised at once (0: one per core).")
    cpus: int = Field(
        0,
        ge=0,
        description="CPUs this process may use (0: all the machine has): a container limit, a local worker share.",
    )
    memory_mb: int = Field(
        0, ge=0, description="Memory this process may use in MiB (0: no budget); fewer encodes at once if needed."
    )
    ffmpeg: str = Field("ffmpeg", validation_alias="FFMPEG", description="ffmpeg binary (FFMPEG, then PATH).")
    ffprobe: str = Field("ffprobe", validation_alias="FFPROBE", description="ffprobe binary (FFPROBE, then PATH).")
    cache_home: str = Field(
        "", validation_alias="XDG_CACHE_HOME", description="The user's cache folder (empty: ~/.cache)."
    )
    # Where the command line and the local cloud find things (scenerender.cli, scenerender.dev).
    cloud: str = Field(
        "",
        description="`gcp`: the command line talks to Google Cloud as configured; otherwise to the local "
        "cloud the emulator variables below (or this folder's `scenerender dev up`) point at.",
    )
    dev_dir: str = Field(".scenerender/dev", description="Where `scenerender dev up` keeps its state and logs.")
    api_url: str = Field("", description="The HTTP API the command line submits to (dev up prints it).")
    user: str = Field("", description="Local cloud: the email the command line signs in with (default local-user).")
    id_token: str = Field("", description="Against the cloud: the Firebase ID token the command line acts with.")
    # Files the local cloud takes from a source checkout (scenerender.dev.checkout); empty: the
    # checkout the package is installed from (an editable install).
    firebase_cli: str = Field(
        "", description="The Firebase CLI that runs the Auth emulator (empty: tools/firebase's, then PATH)."
    )
    functions_source: str = Field("", description="The functions' main.py the local cloud serves (functions/main.py).")
    firestore_rules: str = Field("", description="The rules the local cloud loads into Firestore (firestore.rules).")
    web_dist: str = Field("", description="The built web client `dev up` serves (web/dist; none there: no page).")
    # Read by Google's and Firebase's own libraries from the environment too; read here so the
    # package's own code takes them from this class and passes them on explicitly.
    pubsub_emulator_host: str = Field(
        "", validation_alias="PUBSUB_EMULATOR_HOST", description="Pub/Sub emulator HOST:PORT (empty: Google Cloud)."
    )
    firestore_emulator_host: str = Field(
        "", validation_alias="FIRESTORE_EMULATOR_HOST", description="Firestore emulator HOST:PORT."
    )
    storage_emulator_host: str = Field(
        "", validation_alias="STORAGE_EMULATOR_HOST", description="GCS emulator URL (http://HOST:PORT)."
    )
    auth_emulator_host: str = Field(
        "",
        validation_alias="FIREBASE_AUTH_EMULATOR_HOST",
        description="Firebase Auth emulator HOST:PORT: its unsigned tokens are accepted (dev only).",
    )
    credentials_file: str = Field(
        "",
        validation_alias="GOOGLE_APPLICATION_CREDENTIALS",
        description="A service-account key file; signed URLs are signed with it when present.",
    )
    # Set by Cloud Run on each task of a job execution (and by launcher.LocalLauncher locally).
    cloud_run_execution: str = Field(
        "", validation_alias="CLOUD_RUN_EXECUTION", description="The execution this task belongs to."
    )
    cloud_run_task_index: int | None = Field(
        None, validation_alias="CLOUD_RUN_TASK_INDEX", description="This task's index (None: not a task)."
    )
    cloud_run_task_count: int = Field(
        1, ge=1, validation_alias="CLOUD_RUN_TASK_COUNT", description="Tasks in this execution."
    )

    @property
    def emulated(self) -> bool:
        """Pointed at the local cloud's emulators rather than Google Cloud."""
        return bool(self.pubsub_emulator_host or self.firestore_emulator_host)

    def __init__(self, **values: Any) -> None:
        """Settings from the environment, with ``values`` (by field name) over it.

        pydantic-settings takes a field that has an environment alias (``auth_emulator_host``:
        FIREBASE_AUTH_EMULATOR_HOST) only by that alias as a keyword, and with ``extra="ignore"``
        would drop ``Settings(auth_emulator_host=...)`` without a word; so would it a misspelt
        field. Here a field's name is taken for its alias, and a keyword that names no field
        is a TypeError. (``_env_file`` and the like are pydantic-settings' own.)
        """
        fields = type(self).model_fields
        by_alias = {f.validation_alias: name for name, f in fields.items() if isinstance(f.validation_alias, str)}
        given: dict[str, Any] = {}
        for key, value in values.items():
            if key.startswith("_"):
                given[key] = value
                continue
            name = by_alias.get(key, key)
            if name not in fields:
                raise TypeError(f"Settings has no field {key!r}")
            alias = fields[name].validation_alias
            given[alias if isinstance(alias, str) else name] = value
        super().__init__(**given)

    @field_validator("allowed_gs_buckets", "shared_media_prefixes", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        # Environment variables hold one comma-separated string, not a JSON list.
        if isinstance(value, str):
            return [b.strip() for b in value.split(",") if b.strip()]
        return value

    @field_validator("shared_media_prefixes")
    @classmethod
    def _gs_prefixes(cls, value: list[str]) -> list[str]:
        # A prefix without its trailing slash would share gs://media/shared-not-really/ too.
        for prefix in value:
            if not prefix.startswith("gs://") or not prefix.endswith("/") or len(prefix.split("/")) < 4:
                raise ValueError(f"{prefix!r}: a shared prefix is gs://BUCKET/ or gs://BUCKET/FOLDER/ (ending in /)")
        return value

    def env_vars(self) -> dict[str, str]:
        """The environment that gives a child process these settings: each field set (read from
        this process's environment, or given when these settings were made), by ``env_name``."""
        return {
            self.env_name(name): env_value(value)
            for name in sorted(self.model_fields_set)
            if (value := getattr(self, name)) is not None
        }

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets ``field``."""
        info = cls.model_fields[field]
        alias = info.validation_alias
        if isinstance(alias, str):
            return alias
        return f"SCENERENDER_{field.upper()}"


def env_value(value: object) -> str:
    """A field's value as its environment variable holds it (a list comma-separated)."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: this process's (PATH, HOME, ...) plus ``extra``.

    Google's and Firebase's libraries in the child read their emulator variables from it.
    """
    return {**os.environ, **(extra or {})}

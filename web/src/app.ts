/**
 * The page: Sign in, My renders, New render, Job, Batch. Plain DOM on the typed client; every
 * live view is a Firestore listener, so nothing here polls.
 */
import {
  ApiError,
  type BatchDoc,
  type JobDoc,
  type JobSpec,
  SceneRenderClient,
  type Unsubscribe,
  type WebConfig,
} from "./client";
import { type Problem, type SpecSummary, parseSpecText, summarize, TRACKS } from "./specview";

type Child = Node | string | null | undefined | false;

/** A DOM element: h("p", {class: "x"}, "text", child). Attributes set as attributes, "on*" as listeners. */
/** Replace an element's children, skipping the absent ones. */
function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren(...children.filter((c): c is Node | string => Boolean(c)));
}

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, unknown> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value as EventListener);
    } else if (key in el && typeof value !== "string") {
      (el as unknown as Record<string, unknown>)[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children) if (child) el.append(child);
  return el;
}

const LOCAL_USER = { email: "local-user@scenerender.test", password: "local-user-password" };
const RESOLUTIONS = ["360p", "480p", "720p", "1080p", "1440p", "2160p"];

let client: SceneRenderClient;
let config: WebConfig;
let main: HTMLElement;
let live: HTMLElement;
let cleanups: Unsubscribe[] = [];

/** Say it to screen readers (the header's aria-live region), and show it. */
function announce(text: string): void {
  live.textContent = text;
}

function count(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? "" : "s"}`;
}

function fmtSeconds(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return "–";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

function fmtTime(d: Date | null | undefined): string {
  return d ? d.toLocaleString() : "–";
}

function elapsed(job: JobDoc): number | null {
  const start = job.started_at ?? job.created_at;
  if (!start) return null;
  const end = job.finished_at ?? (job.status === "RUNNING" ? new Date() : null);
  return end ? (end.getTime() - start.getTime()) / 1000 : null;
}

const PLAIN: Record<string, string> = {
  INVALID_SPEC: "The spec has a mistake: fix the fields listed below.",
  INPUT_UNREACHABLE: "An input file could not be fetched.",
  INPUT_REFUSED: "An input file is not one this job may read.",
  INPUT_INVALID_MEDIA: "An input file is not usable video or audio.",
  LIMIT_EXCEEDED: "The job is over one of the service's limits.",
  RENDER_FAILED: "The render itself failed.",
  TIMEOUT: "The render took too long and was stopped.",
  INTERNAL: "Something went wrong on the service's side; rendering again may work.",
  UNAUTHENTICATED: "Your sign-in has expired: sign in again.",
  FORBIDDEN: "That id belongs to another user.",
  NOT_FOUND: "There is no such job.",
  CONFLICT: "That job is still running, or its id is taken.",
  TOO_MANY_JOBS: "You have as many jobs queued or running as allowed: wait for some to finish.",
  "permission-denied": "You may not see this: it belongs to another user.",
};

/** An error in plain words: what went wrong, and each field or input it concerns. */
function errorBlock(error: { code: string; message: string; details?: Problem[] }, role = "alert"): HTMLElement {
  const details = error.details ?? [];
  return h(
    "div",
    { class: "error", role, "data-error-code": error.code },
    PLAIN[error.code] ? h("p", { class: "error-plain" }, PLAIN[error.code]) : null,
    h("p", {}, h("strong", { class: "error-code" }, error.code), " ", error.message),
    details.length > 0 &&
      h(
        "ul",
        { class: "error-details" },
        ...details.map((d) => h("li", {}, d.path ? h("code", {}, d.path) : "", d.path ? ": " : "", d.problem)),
      ),
  );
}

function progressBar(value: number, label: string): HTMLProgressElement {
  return h("progress", { max: 1, value, "aria-label": label, "data-progress": value.toFixed(4) });
}

function statusBadge(status: string): HTMLElement {
  return h("span", { class: `badge badge-${status.toLowerCase()}`, "data-status": status }, status);
}

// ---------------------------------------------------------------- routing

function go(hash: string): void {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route(): void {
  for (const stop of cleanups) stop();
  cleanups = [];
  main.replaceChildren();
  const user = client.user;
  const [, screen = "", arg = ""] = location.hash.split("/").map(decodeURIComponent);
  document.querySelectorAll<HTMLElement>("[data-signed-in]").forEach((el) => {
    el.hidden = !user;
  });
  const who = document.getElementById("who");
  if (who) who.textContent = user ? (user.email ?? user.uid) : "";
  if (!user) return showSignIn();
  if (screen === "new") return showNew();
  if (screen === "job" && arg) return showJob(arg);
  if (screen === "batch" && arg) return showBatch(arg);
  return showList();
}

function screen(title: string, ...children: Child[]): void {
  const heading = h("h1", { tabindex: -1 }, title);
  main.append(heading, ...children.filter((c): c is Node | string => Boolean(c)));
  document.title = `${title} · SceneRender`;
  heading.focus(); // keyboard and screen-reader users land on the new screen's heading
}

// ---------------------------------------------------------------- sign in

function showSignIn(): void {
  const email = h("input", { id: "email", type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", {
    id: "password",
    type: "password",
    name: "password",
    autocomplete: "current-password",
    required: true,
    minlength: 6,
  });
  const problem = h("div", { id: "signin-error", role: "alert" });
  const busy = async (work: () => Promise<unknown>, words: Record<string, string> = {}): Promise<void> => {
    problem.replaceChildren();
    announce("Signing in…");
    try {
      await work();
    } catch (error) {
      const code = (error as { code?: string }).code ?? "auth/error";
      problem.append(errorBlock({ code, message: words[code] ?? plainAuthError(code) }));
      announce("Sign-in failed");
    }
  };
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: (event: Event) => {
        event.preventDefault();
        void busy(() => client.signIn(email.value, password.value));
      },
    },
    h("label", { for: "email" }, "Email"),
    email,
    h("label", { for: "password" }, "Password"),
    password,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", id: "signin" }, "Sign in"),
      h(
        "button",
        {
          type: "button",
          id: "signup",
          class: "secondary",
          onclick: () => {
            if (form.reportValidity()) void busy(() => client.signInOrSignUp(email.value, password.value));
          },
        },
        "Create account",
      ),
    ),
  );
  const others = h("div", { class: "card" });
  if (config.emulators?.auth) {
    others.append(
      h("p", {}, "Local cloud: sign in as a local development user (created on first use)."),
      h(
        "button",
        {
          type: "button",
          id: "local-user",
          onclick: () => void busy(() => client.signInOrSignUp(LOCAL_USER.email, LOCAL_USER.password)),
        },
        "Use the local user",
      ),
    );
  }
  if (config.googleSignIn) {
    others.append(
      h(
        "button",
        { type: "button", id: "google", onclick: () => void busy(() => client.signInWithGoogle(), GOOGLE_ERRORS) },
        "Sign in with Google",
      ),
    );
  }
  screen("Sign in", form, others.childElementCount ? others : null, problem);
}

/** What goes wrong with Google's window, in plain words. */
const GOOGLE_ERRORS: Record<string, string> = {
  // The SDK loads Google's script (apis.google.com) before it opens the window: offline, or
  // with that host blocked, it fails here.
  "auth/internal-error": "Google sign-in could not start: Google's sign-in script (apis.google.com) did not load.",
  "auth/network-request-failed": "Google sign-in could not start: Google's sign-in script (apis.google.com) did not load.",
  "auth/popup-blocked": "The browser blocked Google's sign-in window: allow pop-ups for this page and try again.",
  "auth/popup-closed-by-user": "Google's sign-in window was closed before signing in.",
  "auth/cancelled-popup-request": "Google's sign-in window was closed before signing in.",
  "auth/operation-not-allowed": "Google sign-in is not enabled for this project.",
  "auth/unauthorized-domain": "This page's address is not among the project's authorised domains for Google sign-in.",
};

function plainAuthError(code: string): string {
  const words: Record<string, string> = {
    "auth/invalid-credential": "That email and password do not match an account.",
    "auth/wrong-password": "That password is not right for this account.",
    "auth/user-not-found": "There is no account with that email.",
    "auth/email-already-in-use": "An account with that email exists: sign in instead.",
    "auth/weak-password": "Choose a password of at least 6 characters.",
    "auth/invalid-email": "That is not an email address.",
    "auth/network-request-failed": "The sign-in service cannot be reached.",
  };
  return words[code] ?? `Sign-in did not work (${code}).`;
}

// ---------------------------------------------------------------- my renders

function jobRow(job: JobDoc): HTMLElement {
  const progress = job.progress ?? 0;
  const sceneLength = job.output?.duration_s;
  return h(
    "li",
    { class: "job", "data-job-id": job.job_id, "data-status": job.status },
    h(
      "div",
      { class: "job-head" },
      h("a", { href: `#/job/${encodeURIComponent(job.job_id)}` }, job.job_id),
      statusBadge(job.status),
    ),
    h("div", { class: "job-stage" }, `Stage: ${job.stage ?? "–"}`, ` · ${Math.round(progress * 100)} %`),
    progressBar(progress, `Progress of ${job.job_id}`),
    h(
      "div",
      { class: "job-meta" },
      `Created ${fmtTime(job.created_at)} · took ${fmtSeconds(elapsed(job))}`,
      sceneLength !== undefined ? ` · scene ${fmtSeconds(sceneLength)}` : "",
      job.batch_id ? " · batch " : "",
      job.batch_id ? h("a", { href: `#/batch/${encodeURIComponent(job.batch_id)}` }, job.batch_id) : "",
    ),
    job.error ? errorBlock(job.error, "note") : null,
  );
}

function showList(): void {
  const list = h("ul", { id: "jobs", class: "jobs", "aria-live": "polite", "aria-busy": true });
  const empty = h("p", { id: "no-jobs", hidden: true }, "No renders yet. ", h("a", { href: "#/new" }, "Start one."));
  const problem = h("div", { role: "alert" });
  screen("My renders", h("p", {}, h("a", { href: "#/new", class: "button" }, "New render")), list, empty, problem);
  const statuses = new Map<string, string>();
  cleanups.push(
    client.watchMine(
      (jobs) => {
        list.setAttribute("aria-busy", "false");
        list.replaceChildren(...jobs.map(jobRow));
        empty.hidden = jobs.length > 0;
        for (const job of jobs) {
          const before = statuses.get(job.job_id);
          if (before && before !== job.status) announce(`${job.job_id}: ${job.status.toLowerCase()}`);
          statuses.set(job.job_id, job.status);
        }
      },
      (error) => problem.replaceChildren(errorBlock({ code: error.code, message: error.message })),
    ),
  );
}

// ---------------------------------------------------------------- new render

function showNew(): void {
  const samples = config.samples ?? [];
  const sample = h(
    "select",
    { id: "sample" },
    h("option", { value: "" }, "— choose a sample scene —"),
    ...samples.map((s) => h("option", { value: s.name }, s.title)),
  );
  const file = h("input", { id: "spec-file", type: "file", accept: "application/json,.json" });
  const text = h("textarea", {
    id: "spec-text",
    rows: 12,
    spellcheck: false,
    "aria-describedby": "spec-help",
  });
  const summary = h("section", { id: "summary", "aria-labelledby": "summary-h" });
  const tracks = h("fieldset", { id: "tracks" }, h("legend", {}, "Audio tracks"));
  const resolution = h(
    "select",
    { id: "resolution" },
    ...RESOLUTIONS.map((r) => h("option", { value: r }, r)),
  );
  const preview = h("input", { id: "preview", type: "checkbox" });
  const jobId = h("input", { id: "job-id", type: "text", pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,127}", "aria-describedby": "job-id-help" });
  const problem = h("div", { id: "submit-error", role: "alert" });
  const jobIdLabel = h("label", { for: "job-id" }, "Job id");
  const render = h("button", { type: "submit", id: "render", disabled: true }, "Render");
  let current: SpecSummary | null = null;
  let parsed: Record<string, unknown> | null = null;

  const refresh = (fromSample = false): void => {
    problem.replaceChildren();
    const result = parseSpecText(text.value);
    parsed = result.data;
    const batch = Array.isArray(parsed?.scenes);
    current = result.data && !batch ? summarize(result.data) : null;
    for (const el of [resolution, preview]) el.disabled = batch;
    jobIdLabel.textContent = batch ? "Batch id" : "Job id";
    summary.replaceChildren(h("h2", { id: "summary-h" }, "Scene"));
    tracks.replaceChildren(h("legend", {}, "Audio tracks"));
    if (result.problems.length) {
      summary.append(errorBlock({ code: "INVALID_SPEC", message: "This spec cannot be read:", details: result.problems }, "status"));
    }
    render.disabled = !parsed;
    if (parsed && batch) {
      const scenes = parsed.scenes as Record<string, unknown>[];
      summary.append(
        h("p", { id: "scene-duration" }, `A batch of ${scenes.length} scenes`),
        h(
          "ol",
          { id: "segments" },
          ...scenes.map((scene) => {
            const s = summarize(scene ?? {});
            return h("li", {}, h("code", {}, String(scene?.scene_id ?? "?")), ` ${count(s.segments.length, "segment")} · ${s.durationText}`);
          }),
        ),
      );
      jobId.value = typeof parsed.batch_id === "string" ? parsed.batch_id : "";
      return;
    }
    if (!current || !parsed) return;
    summary.append(
      h("p", { id: "scene-duration" }, `${count(current.segments.length, "segment")} · scene ${current.durationText}`),
      h(
        "ol",
        { id: "segments" },
        ...current.segments.map((s) => h("li", {}, h("code", {}, s.id), ` ${s.durationText}`)),
      ),
    );
    for (const track of current.tracks) {
      const id = `track-${track.type}`;
      tracks.append(
        h(
          "div",
          { class: "check" },
          h("input", { id, type: "checkbox", checked: track.enabled, "data-track": track.type }),
          h("label", { for: id }, `${track.label}: ${track.describe}`),
        ),
      );
    }
    const out = (parsed.output ?? {}) as Record<string, unknown>;
    const res = typeof out.resolution === "string" ? out.resolution : "1080p";
    if (!RESOLUTIONS.includes(res)) resolution.append(h("option", { value: res }, res));
    resolution.value = res;
    preview.checked = out.preview === true;
    const given = typeof parsed.job_id === "string" ? parsed.job_id : "";
    if (fromSample || !given) {
      jobId.value = `${String(parsed.scene_id ?? "scene").slice(0, 60)}-${Date.now().toString(36)}`;
    } else {
      jobId.value = given;
    }
  };

  sample.addEventListener("change", () => {
    const chosen = samples.find((s) => s.name === sample.value);
    if (!chosen) return;
    text.value = JSON.stringify(chosen.spec, null, 2);
    refresh(true);
  });
  file.addEventListener("change", async () => {
    const f = file.files?.[0];
    if (!f) return;
    text.value = await f.text();
    refresh();
  });
  text.addEventListener("input", () => refresh());

  const send = async (spec: Record<string, unknown>): Promise<void> => {
    render.disabled = true;
    announce("Submitting…");
    try {
      const done = await client.submit(spec as unknown as JobSpec);
      if (done.batch_id) {
        announce(`Batch ${done.batch_id} submitted`);
        return go(`#/batch/${encodeURIComponent(done.batch_id)}`);
      }
      const id = done.job_id ?? String(spec.job_id);
      announce(`Job ${id} submitted`);
      go(`#/job/${encodeURIComponent(id)}`);
    } catch (error) {
      render.disabled = false;
      if (error instanceof ApiError) {
        problem.replaceChildren(errorBlock({ code: error.code, message: error.message, details: error.details }));
      } else {
        problem.replaceChildren(errorBlock({ code: "NETWORK", message: String(error) }));
      }
      announce("The render was not started");
    }
  };

  const form = h(
    "form",
    {
      class: "card",
      onsubmit: (event: Event) => {
        event.preventDefault();
        if (!parsed) return;
        const spec = structuredClone(parsed) as Record<string, unknown>;
        if (Array.isArray(spec.scenes)) {
          if (jobId.value) spec.batch_id = jobId.value;
          return void send(spec);
        }
        if (jobId.value) spec.job_id = jobId.value;
        const output = { ...((spec.output ?? {}) as Record<string, unknown>) };
        output.resolution = resolution.value;
        output.preview = preview.checked;
        spec.output = output;
        if (current && current.tracks.length) {
          const audio = { ...((spec.audio ?? {}) as Record<string, unknown>) };
          const ticks: Record<string, boolean> = {};
          tracks.querySelectorAll<HTMLInputElement>("input[data-track]").forEach((box) => {
            ticks[box.dataset.track ?? ""] = box.checked;
          });
          audio.tracks = { ...((audio.tracks ?? {}) as Record<string, boolean>), ...ticks };
          spec.audio = audio;
        }
        return void send(spec);
      },
    },
    h("label", { for: "sample" }, "Sample scene"),
    sample,
    h("label", { for: "spec-file" }, "Or upload a job_spec.json"),
    file,
    h("label", { for: "spec-text" }, "Or paste the job spec (JSON)"),
    text,
    h("p", { id: "spec-help", class: "help" }, "Version 1 job spec; see the contract for its fields."),
    summary,
    tracks,
    h("label", { for: "resolution" }, "Resolution"),
    resolution,
    h("div", { class: "check" }, preview, h("label", { for: "preview" }, "Preview (quick, at most 480p)")),
    jobIdLabel,
    jobId,
    h("p", { id: "job-id-help", class: "help" }, "The same id again re-renders that job."),
    h(
      "div",
      { class: "actions" },
      render,
      h("button", { type: "button", class: "secondary", onclick: () => go("#/") }, "Cancel"),
    ),
    problem,
  );
  screen("New render", form);
  refresh();
}

// ---------------------------------------------------------------- job page

function figures(job: JobDoc): HTMLElement | null {
  const out = job.output;
  if (!out) return null;
  const rows: [string, string][] = [
    ["Duration", fmtSeconds(out.duration_s)],
    ["Frame", out.width && out.height ? `${out.width}×${out.height} @ ${out.fps ?? "?"} fps` : "–"],
    ["Loudness", out.loudness_lufs !== undefined && out.loudness_lufs !== null ? `${out.loudness_lufs.toFixed(1)} LUFS` : "–"],
    ["True peak", out.true_peak_db !== undefined && out.true_peak_db !== null ? `${out.true_peak_db.toFixed(1)} dBTP` : "–"],
    ["A/V drift", out.av_drift_ms !== undefined ? `${out.av_drift_ms.toFixed(1)} ms` : "–"],
    ["Size", out.size_bytes ? `${(out.size_bytes / 1e6).toFixed(2)} MB` : "–"],
  ];
  return h(
    "dl",
    { id: "figures", class: "figures" },
    ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-figure": k }, v)]),
  );
}

async function saveBlob(job: JobDoc): Promise<void> {
  announce("Downloading…");
  const blob = await client.download(job);
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: `${job.job_id}.mp4`, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  announce(`Downloaded ${job.job_id}.mp4`);
}

/** The spec of a preview, as the full-quality render of it: a job of its own beside the preview. */
function promoted(spec: JobSpec, jobId: string): JobSpec {
  const { batch_id: _batch, ...rest } = spec;
  return { ...rest, job_id: `${jobId.slice(0, 123)}-full`, output: { ...spec.output, preview: false } };
}

async function resubmit(spec: JobSpec, status: HTMLElement): Promise<void> {
  announce("Submitting…");
  try {
    const done = await client.submit(spec);
    const id = done.job_id ?? spec.job_id ?? "";
    announce(`Job ${id} submitted`);
    go(`#/job/${encodeURIComponent(id)}`);
  } catch (error) {
    const e = error instanceof ApiError ? error : new ApiError(0, "NETWORK", String(error));
    status.replaceChildren(errorBlock({ code: e.code, message: e.message, details: e.details }));
  }
}

function showJob(jobId: string): void {
  const state = h("div", { id: "job-state" });
  const player = h("div", { id: "player" });
  const actions = h("div", { class: "actions", id: "job-actions" });
  const problem = h("div", { role: "alert" });
  screen(`Job ${jobId}`, state, player, actions, problem, h("p", {}, h("a", { href: "#/" }, "← My renders")));
  let lastStatus = "";
  let shownUrl = "";
  // The spec the job was accepted from, asked of the API once the job has ended (any browser
  // of the owner's can re-render it): undefined until asked, null when the API has none.
  let accepted: JobSpec | null | undefined;
  let asking = false;
  let latest: JobDoc | null = null;
  const showActions = (job: JobDoc): void => {
    latest = job;
    const ended = job.status === "COMPLETED" || job.status === "FAILED";
    if (ended && accepted === undefined && !asking) {
      asking = true;
      client
        .getJob(jobId)
        .then((owned) => {
          accepted = owned.spec;
        })
        .catch(() => {
          accepted = null; // the buttons stay away; the job itself is shown
        })
        .finally(() => {
          asking = false;
          if (latest) showActions(latest);
        });
    }
    const url = job.status === "COMPLETED" ? job.output?.url : undefined;
    const spec = ended ? accepted : null;
    fill(
      actions,
      url
        ? h(
            "button",
            {
              type: "button",
              id: "download",
              onclick: () =>
                void saveBlob(job).catch((e) => problem.replaceChildren(errorBlock({ code: "DOWNLOAD", message: String(e) }))),
            },
            "Download MP4",
          )
        : null,
      spec ? h("button", { type: "button", id: "rerender", class: "secondary", onclick: () => void resubmit(spec, problem) }, "Re-render") : null,
      spec && spec.output?.preview && job.status === "COMPLETED"
        ? h("button", { type: "button", id: "promote", onclick: () => void resubmit(promoted(spec, jobId), problem) }, "Render full quality")
        : null,
    );
  };
  cleanups.push(
    client.watch(
      jobId,
      (job) => {
        if (!job) {
          // Until the service writes it; a job of another user's looks the same: never there.
          fill(state, h("p", { "data-status": "WAITING" }, `Waiting for job ${jobId} to appear…`));
          return;
        }
        const progress = job.progress ?? 0;
        fill(state, 
          h("p", {}, "Status: ", statusBadge(job.status), ` · stage `, h("span", { id: "stage", "data-stage": job.stage ?? "" }, job.stage ?? "–")),
          progressBar(progress, "Render progress"),
          h("p", { id: "progress-text" }, `${Math.round(progress * 100)} % · ${fmtSeconds(elapsed(job))}`),
          job.batch_id ? h("p", {}, "Batch ", h("a", { href: `#/batch/${encodeURIComponent(job.batch_id)}` }, job.batch_id)) : null,
          job.error ? errorBlock(job.error, "note") : null,
          figures(job),
        );
        if (job.status !== lastStatus) {
          announce(`Job ${jobId}: ${job.status.toLowerCase()}${job.error ? ` — ${job.error.code}: ${job.error.message}` : ""}`);
          lastStatus = job.status;
        }
        const url = job.status === "COMPLETED" ? job.output?.url : undefined;
        if ((url ?? "") !== shownUrl) {
          shownUrl = url ?? ""; // a re-render in progress has no output yet: the old one is not offered
          player.replaceChildren(
            url ? h("video", { id: "video", controls: true, preload: "metadata", src: url, "aria-label": `Render of ${jobId}` }) : "",
          );
        }
        showActions(job);
      },
      (error) => problem.replaceChildren(errorBlock({ code: error.code, message: error.message })),
    ),
  );
}

// ---------------------------------------------------------------- batch page

function showBatch(batchId: string): void {
  const state = h("div", { id: "batch-state" });
  const jobs = h("ul", { id: "batch-jobs", class: "jobs" });
  const problem = h("div", { role: "alert" });
  screen(`Batch ${batchId}`, state, h("h2", {}, "Scenes"), jobs, problem, h("p", {}, h("a", { href: "#/" }, "← My renders")));
  let lastStatus = "";
  cleanups.push(
    client.watchBatch(
      batchId,
      (batch: BatchDoc | null) => {
        if (!batch) {
          fill(state, h("p", {}, "Waiting for the batch to appear…"));
          return;
        }
        const c = batch.counts ?? {};
        const progress = batch.progress ?? 0;
        fill(state, 
          h("p", {}, "Status: ", statusBadge(batch.status)),
          progressBar(progress, "Batch progress"),
          h(
            "p",
            { id: "batch-counts", "data-completed": c.COMPLETED ?? 0, "data-total": batch.total ?? 0 },
            `${c.COMPLETED ?? 0} of ${batch.total ?? 0} done · ${c.RUNNING ?? 0} running · ${c.QUEUED ?? 0} queued · ${c.FAILED ?? 0} failed`,
          ),
          h("p", { id: "batch-eta" }, `${Math.round(progress * 100)} % · ETA ${batch.eta_s ? fmtSeconds(batch.eta_s) : "–"}`),
          batch.error ? errorBlock(batch.error, "note") : null,
        );
        if (batch.status !== lastStatus) {
          announce(`Batch ${batchId}: ${batch.status.toLowerCase()}`);
          lastStatus = batch.status;
        }
      },
      (error) => problem.replaceChildren(errorBlock({ code: error.code, message: error.message })),
    ),
    client.watchBatchJobs(
      batchId,
      (list) => jobs.replaceChildren(...list.sort((a, b) => a.job_id.localeCompare(b.job_id)).map(jobRow)),
      (error) => problem.replaceChildren(errorBlock({ code: error.code, message: error.message })),
    ),
  );
}

// ---------------------------------------------------------------- start

async function start(): Promise<void> {
  main = document.getElementById("main") as HTMLElement;
  live = document.getElementById("live") as HTMLElement;
  config = (await (await fetch("config.json")).json()) as WebConfig;
  client = new SceneRenderClient(config);
  (window as unknown as { scenerender: SceneRenderClient }).scenerender = client; // for tests and the console
  document.getElementById("signout")?.addEventListener("click", () => void client.signOut());
  let first = true;
  client.onUser((user) => {
    document.body.dataset.user = user ? user.uid : "";
    if (user && location.hash.startsWith("#/signin")) location.hash = "#/";
    route();
    if (!first) announce(user ? `Signed in as ${user.email ?? user.uid}` : "Signed out");
    first = false;
  });
  window.addEventListener("hashchange", route);
}

void start();

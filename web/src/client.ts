/**
 * SceneRender's typed client: submit a spec to the HTTP API with the user's Firebase ID token,
 * follow jobs and batches with Firestore realtime listeners, download the MP4.
 *
 * The web page is built on it, and a TypeScript backend can import it as it is (the Firebase JS
 * SDK runs in Node too). It holds no secret: the Firebase web config is public by design, and
 * every read is checked by firestore.rules against the signed-in user.
 */
import { type FirebaseApp, initializeApp } from "firebase/app";
import {
  type Auth,
  connectAuthEmulator,
  createUserWithEmailAndPassword,
  getAuth,
  GoogleAuthProvider,
  onAuthStateChanged,
  signInWithEmailAndPassword,
  signInWithCredential,
  signInWithPopup,
  signOut,
  type User,
} from "firebase/auth";
import {
  collection,
  connectFirestoreEmulator,
  doc,
  type Firestore,
  type FirestoreError,
  getDoc,
  getFirestore,
  limit,
  onSnapshot,
  orderBy,
  query,
  type QueryConstraint,
  Timestamp,
  where,
} from "firebase/firestore";

import type { SceneRenderJobSpecV1 } from "./spec";

export type JobSpec = SceneRenderJobSpecV1;
export type * from "./spec";

/** What the page is given in config.json: only public values. */
export interface WebConfig {
  /** The Firebase web app config (public: apiKey identifies the project, it grants nothing). */
  firebase: { apiKey: string; projectId: string; authDomain?: string; appId?: string };
  /** The HTTP API's base URL (same origin "/api" locally, where the dev server proxies it). */
  apiUrl: string;
  /** Locally: the emulators' addresses ("http://127.0.0.1:9099", "127.0.0.1:8086"). */
  emulators?: { auth?: string; firestore?: string };
  /** Whether Google sign-in is configured for this project. */
  googleSignIn?: boolean;
  /** Firestore collection names (the pipeline's settings). */
  collections?: { jobs?: string; batches?: string };
  /** Sample scenes whose media the operator shares. */
  samples?: { name: string; title: string; spec: JobSpec }[];
}

export type JobStatus = "QUEUED" | "RUNNING" | "COMPLETED" | "FAILED";

/** One located problem (docs/contract.md: one error object everywhere): a JSON path into the spec, and what is wrong there. */
export interface ErrorDetail {
  path: string;
  problem: string;
}

export interface JobError {
  code: string;
  message: string;
  details?: ErrorDetail[];
}

/** The measured render result (CONTRACT.md section 2). */
export interface RenderResult {
  duration_s?: number;
  width?: number;
  height?: number;
  fps?: number;
  size_bytes?: number;
  loudness_lufs?: number | null;
  true_peak_db?: number | null;
  av_drift_ms?: number;
  /** The sync certificate, measured on the output (docs/media.md). */
  sync?: {
    max_boundary_error_ms?: number;
    max_onset_error_ms?: number | null;
    boundaries_measured?: number;
    onsets_measured?: number;
    onsets_not_measured?: string[];
  };
  timings?: Record<string, number>;
  [key: string]: unknown;
}

export interface JobOutput extends RenderResult {
  uri?: string;
  url?: string;
  url_expires_at?: Date | null;
}

/** `render_jobs/{job_id}` (CONTRACT.md section 4); timestamps as Dates. */
export interface JobDoc {
  job_id: string;
  status: JobStatus;
  stage?: string;
  progress?: number;
  project_id?: string;
  scene_id?: string;
  owner_uid?: string;
  batch_id?: string | null;
  spec_uri?: string;
  created_at?: Date | null;
  started_at?: Date | null;
  finished_at?: Date | null;
  updated_at?: Date | null;
  attempt?: number;
  error?: JobError | null;
  output?: JobOutput | null;
  [key: string]: unknown;
}

/** The API's answer to its owner's GET of a job: the document and the spec it was accepted from. */
export interface OwnedJob extends JobDoc {
  /** `null` once the accepted spec object is gone (replaced, or the bucket's lifecycle). */
  spec: JobSpec | null;
}

/** `render_batches/{batch_id}`: counts per status, progress weighted by scene length, ETA. */
export interface BatchDoc {
  batch_id: string;
  status: JobStatus;
  counts?: Partial<Record<JobStatus, number>>;
  total?: number;
  progress?: number;
  eta_s?: number | null;
  failed?: string[];
  scenes?: string[];
  error?: JobError | null;
  owner_uid?: string;
  updated_at?: Date | null;
  [key: string]: unknown;
}

/** A batch file: many scenes as one unit, each scene its own job (`render_batches/{batch_id}`). */
export interface BatchFile {
  version: 1;
  batch_id: string;
  owner_uid?: string | null;
  scenes: JobSpec[];
}

/** The API's answer to a submission: a job's id, or a batch's. */
export interface Submitted {
  job_id?: string;
  batch_id?: string;
  spec_uri?: string;
  [key: string]: unknown;
}

/** An HTTP API refusal: its status and the contract's error object (code, message, details). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: ErrorDetail[] = [],
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export type Unsubscribe = () => void;

/** Firestore Timestamps become Dates, recursively, so callers see plain data. */
function plain(value: unknown): unknown {
  if (value instanceof Timestamp) return value.toDate();
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

/**
 * A document as the page reads it: Timestamps as Dates, and its error's details as the
 * contract's `{path, problem}`. Documents written before the contract named it `problem`
 * carry `{path, message}`; their words are kept, under `problem`.
 */
function fromDoc(value: Record<string, unknown>): Record<string, unknown> {
  const data = plain(value) as Record<string, unknown>;
  const error = data.error as { details?: unknown } | null | undefined;
  if (error && Array.isArray(error.details)) {
    const details = (error.details as Record<string, unknown>[]).map((d) => ({
      path: typeof d?.path === "string" ? d.path : "",
      problem: String(d?.problem ?? d?.message ?? ""),
    }));
    data.error = { ...error, details };
  }
  return data;
}

export const TERMINAL: ReadonlySet<JobStatus> = new Set<JobStatus>(["COMPLETED", "FAILED"]);

export class SceneRenderClient {
  readonly app: FirebaseApp;
  readonly auth: Auth;
  readonly db: Firestore;
  private readonly jobsCollection: string;
  private readonly batchesCollection: string;

  constructor(
    readonly config: WebConfig,
    name?: string,
  ) {
    this.app = initializeApp(config.firebase, name);
    this.auth = getAuth(this.app);
    this.db = getFirestore(this.app);
    const emulators = config.emulators ?? {};
    if (emulators.auth) connectAuthEmulator(this.auth, emulators.auth, { disableWarnings: true });
    if (emulators.firestore) {
      const [host, port] = emulators.firestore.split(":");
      connectFirestoreEmulator(this.db, host ?? "127.0.0.1", Number(port));
    }
    this.jobsCollection = config.collections?.jobs ?? "render_jobs";
    this.batchesCollection = config.collections?.batches ?? "render_batches";
  }

  get user(): User | null {
    return this.auth.currentUser;
  }

  onUser(callback: (user: User | null) => void): Unsubscribe {
    return onAuthStateChanged(this.auth, callback);
  }

  async signIn(email: string, password: string): Promise<User> {
    return (await signInWithEmailAndPassword(this.auth, email, password)).user;
  }

  /** Sign in, creating the account first if it does not exist (the local user; email sign-up). */
  async signInOrSignUp(email: string, password: string): Promise<User> {
    try {
      return await this.signIn(email, password);
    } catch (error) {
      const code = (error as { code?: string }).code ?? "";
      if (code !== "auth/user-not-found" && code !== "auth/invalid-credential") throw error;
      return (await createUserWithEmailAndPassword(this.auth, email, password)).user;
    }
  }

  /** Google's own sign-in window (the Auth emulator's fake Google locally). */
  async signInWithGoogle(): Promise<User> {
    return (await signInWithPopup(this.auth, new GoogleAuthProvider())).user;
  }

  /**
   * Sign in with a Google ID token the caller already holds (Google Identity Services' one-tap
   * button, or a backend's own Google sign-in); the Auth emulator takes a fake one, a JSON
   * object of claims (`{"sub", "email", "email_verified"}`).
   */
  async signInWithGoogleIdToken(idToken: string): Promise<User> {
    return (await signInWithCredential(this.auth, GoogleAuthProvider.credential(idToken))).user;
  }

  signOut(): Promise<void> {
    return signOut(this.auth);
  }

  private async token(): Promise<string> {
    const user = this.auth.currentUser;
    if (!user) throw new ApiError(401, "UNAUTHENTICATED", "sign in first");
    return user.getIdToken();
  }

  private async api(path: string, init: RequestInit): Promise<unknown> {
    const headers = new Headers(init.headers);
    headers.set("Authorization", `Bearer ${await this.token()}`);
    const response = await fetch(`${this.config.apiUrl.replace(/\/$/, "")}${path}`, { ...init, headers });
    const text = await response.text();
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const error = (body as { error?: JobError } | null)?.error;
      throw new ApiError(
        response.status,
        error?.code ?? `HTTP_${response.status}`,
        error?.message ?? (text.slice(0, 300) || response.statusText),
        error?.details ?? [],
      );
    }
    return body;
  }

  /**
   * Submit a job spec or a batch file (an object, or JSON text as the user wrote it) as the
   * signed-in user. Resolves with the job (or batch) id once the API has accepted it; a refusal rejects with an ApiError
   * whose details locate each problem (`segments[0].url: ...`).
   */
  async submit(spec: JobSpec | BatchFile | string): Promise<Submitted> {
    // The signed-in user owns what they submit: an object without an owner names them (the API
    // refuses any other uid; it is written out so the job reads the same on either door).
    const uid = this.auth.currentUser?.uid;
    const owned = typeof spec !== "string" && !spec.owner_uid && uid ? { ...spec, owner_uid: uid } : spec;
    const body = typeof owned === "string" ? owned : JSON.stringify(owned);
    return (await this.api("/", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    })) as Submitted;
  }

  /**
   * The job document through the API (owner-only), without a listener, with `spec`: the spec
   * it was last accepted from, so any browser of its owner can re-render or promote it.
   */
  async getJob(jobId: string): Promise<OwnedJob> {
    return fromDoc((await this.api(`/?job_id=${encodeURIComponent(jobId)}`, { method: "GET" })) as Record<string, unknown>) as OwnedJob;
  }

  /** Read a job document once, straight from Firestore (the rules admit only its owner). */
  async readJob(jobId: string): Promise<JobDoc | null> {
    const snap = await getDoc(doc(this.db, this.jobsCollection, jobId));
    return snap.exists() ? (fromDoc({ job_id: jobId, ...snap.data() }) as JobDoc) : null;
  }

  /**
   * Follow one job live (a Firestore listener: every write the worker makes arrives, no polling).
   * `onChange(null)` while the job does not exist yet, as far as the server can tell this user.
   */
  watch(jobId: string, onChange: (job: JobDoc | null) => void, onError?: (e: FirestoreError) => void): Unsubscribe {
    return this.watchOwned(this.jobsCollection, "job_id", jobId, (data) => ({ ...data, job_id: jobId }) as JobDoc, onChange, onError);
  }

  /** Follow a batch document live (counts, weighted progress, ETA); `onChange(null)` until it exists. */
  watchBatch(
    batchId: string,
    onChange: (batch: BatchDoc | null) => void,
    onError?: (e: FirestoreError) => void,
  ): Unsubscribe {
    return this.watchOwned(
      this.batchesCollection,
      "batch_id",
      batchId,
      (data) => ({ ...data, batch_id: batchId }) as BatchDoc,
      onChange,
      onError,
    );
  }

  /**
   * One of the user's documents by id, live, through the query `owner_uid == me && <id field> == id`.
   *
   * A listener on the document itself is refused while it does not exist (the rules cannot see
   * an owner there), and refused alike when it is another user's: it would have to be attached
   * again and again until the pipeline writes it. The query is one the rules allow; it is empty
   * until the document is written, then carries every write, and stays empty for another
   * user's document, so nobody learns that it exists. The id is matched on the field every
   * job and batch document carries (`job_id`, `batch_id`): the Firestore emulator's rules
   * refuse a query that filters on the document name itself.
   */
  private watchOwned<T>(
    name: string,
    idField: string,
    id: string,
    shape: (data: Record<string, unknown>) => T,
    onChange: (value: T | null) => void,
    onError?: (e: FirestoreError) => void,
  ): Unsubscribe {
    const owned = query(collection(this.db, name), where("owner_uid", "==", this.uid()), where(idField, "==", id));
    return onSnapshot(
      owned,
      (snap) => {
        const found = snap.docs.find((d) => d.id === id);
        onChange(found ? (fromDoc(shape(found.data()) as Record<string, unknown>) as T) : null);
      },
      onError,
    );
  }

  /** The signed-in user's uid: every listener is on their own documents. */
  private uid(): string {
    const uid = this.auth.currentUser?.uid;
    if (!uid) throw new ApiError(401, "UNAUTHENTICATED", "sign in first");
    return uid;
  }

  /** Follow the signed-in user's jobs, newest first (the query the rules allow: owner_uid == me). */
  watchMine(onChange: (jobs: JobDoc[]) => void, onError?: (e: FirestoreError) => void, max = 100): Unsubscribe {
    return this.watchJobs([orderBy("created_at", "desc"), limit(max)], onChange, onError);
  }

  /** The jobs of one batch, live. */
  watchBatchJobs(
    batchId: string,
    onChange: (jobs: JobDoc[]) => void,
    onError?: (e: FirestoreError) => void,
  ): Unsubscribe {
    return this.watchJobs([where("batch_id", "==", batchId)], onChange, onError);
  }

  /** The user's jobs that also meet `constraints`, live (owner_uid == me comes first: the rules ask it). */
  private watchJobs(
    constraints: QueryConstraint[],
    onChange: (jobs: JobDoc[]) => void,
    onError?: (e: FirestoreError) => void,
  ): Unsubscribe {
    const jobs = query(collection(this.db, this.jobsCollection), where("owner_uid", "==", this.uid()), ...constraints);
    return onSnapshot(
      jobs,
      (snap) => onChange(snap.docs.map((d) => fromDoc({ job_id: d.id, ...d.data() }) as JobDoc)),
      onError,
    );
  }

  /**
   * Fetch a completed job's MP4 from its signed URL. Resolves with the file's bytes; the page
   * hands them to the browser as a download, a backend writes them where it wants.
   */
  async download(job: JobDoc): Promise<Blob> {
    const url = job.output?.url;
    if (job.status !== "COMPLETED" || !url) {
      throw new ApiError(409, "CONFLICT", `job ${job.job_id} has no output yet (${job.status})`);
    }
    const response = await fetch(url);
    if (!response.ok) {
      throw new ApiError(response.status, "INPUT_UNREACHABLE", `download failed: HTTP ${response.status}`);
    }
    return response.blob();
  }
}

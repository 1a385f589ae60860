/**
 * What the New render dialog shows of a spec before it is sent: its segments, the scene's
 * length where the spec gives it, and each audio track's clip count and known length. The
 * spec is validated by the API (one validator, the pipeline's); here it is only read.
 */

import type { ErrorDetail } from "./client";

/** One located problem, in the contract's form (the API's and the job document's). */
export type Problem = ErrorDetail;

export const TRACKS = ["narration", "dialogue", "music", "sfx"] as const;
export type Track = (typeof TRACKS)[number];
const LABELS: Record<Track, string> = { narration: "Narration", dialogue: "Dialogue", music: "Music", sfx: "SFX" };

export interface SpecSummary {
  segments: { id: string; duration: number | null; durationText: string }[];
  /** The scene's length when every segment gives its duration, else null (probed by the renderer). */
  duration: number | null;
  durationText: string;
  tracks: { type: Track; label: string; enabled: boolean; clips: number; seconds: number | null; describe: string }[];
}

/** JSON text to an object, or where it breaks ("line 3, column 7"). */
export function parseSpecText(text: string): { data: Record<string, unknown> | null; problems: Problem[] } {
  if (!text.trim()) return { data: null, problems: [] };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    const at = syntaxErrorAt(text);
    const before = text.slice(0, at);
    const line = before.split("\n").length;
    const column = at - (before.lastIndexOf("\n") + 1) + 1;
    return {
      data: null,
      problems: [{ path: `line ${line}, column ${column}`, problem: `not valid JSON: ${(error as Error).message}` }],
    };
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    return { data: null, problems: [{ path: "", problem: "a job spec is a JSON object ({ … })" }] };
  }
  return { data: data as Record<string, unknown>, problems: [] };
}

/**
 * The offset of the first character JSON does not allow. Browsers word (and place) JSON.parse's
 * errors differently, and Chromium's often give no position at all, so the text is scanned here.
 */
export function syntaxErrorAt(text: string): number {
  let i = 0;
  class Stop extends Error {}
  const fail = (): never => {
    throw new Stop();
  };
  const ws = (): void => {
    while (i < text.length && " \t\r\n".includes(text[i] ?? "")) i++;
  };
  const literal = (word: string): void => {
    for (const ch of word) if (text[i++] !== ch) return void (i--, fail());
  };
  const string = (): void => {
    i++; // the opening quote
    while (i < text.length) {
      const ch = text[i] ?? "";
      if (ch === '"') return void i++;
      if (ch < " ") fail();
      if (ch === "\\") {
        i++;
        if (text[i] === "u") {
          for (let k = 1; k <= 4; k++) if (!/[0-9a-fA-F]/.test(text[i + k] ?? "")) return void ((i += k), fail());
          i += 5;
          continue;
        }
        if (!'"\\/bfnrt'.includes(text[i] ?? "x")) fail();
      }
      i++;
    }
    fail();
  };
  const number = (): void => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m || !m[0] || m[0] === "-") fail();
    i += m?.[0].length ?? 0;
  };
  const value = (): void => {
    ws();
    const ch = text[i];
    if (ch === "{") {
      i++;
      ws();
      if (text[i] === "}") return void i++;
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        string();
        ws();
        if (text[i] !== ":") fail();
        i++;
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") return void i++;
        else fail();
      }
    }
    if (ch === "[") {
      i++;
      ws();
      if (text[i] === "]") return void i++;
      for (;;) {
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") return void i++;
        else fail();
      }
    }
    if (ch === '"') return string();
    if (ch === "t") return literal("true");
    if (ch === "f") return literal("false");
    if (ch === "n") return literal("null");
    return number();
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
  } catch (error) {
    if (!(error instanceof Stop)) throw error;
  }
  return Math.min(i, text.length);
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

export function summarize(spec: Record<string, unknown>): SpecSummary {
  const rawSegments = Array.isArray(spec.segments) ? (spec.segments as Record<string, unknown>[]) : [];
  const segments = rawSegments.map((s, i) => {
    const duration = num(s?.duration);
    return {
      id: typeof s?.id === "string" ? s.id : `#${i + 1}`,
      duration,
      durationText: duration === null ? "(to the end of its source)" : `${duration.toFixed(2)} s`,
    };
  });
  const known = segments.every((s) => s.duration !== null);
  const duration = known ? segments.reduce((sum, s) => sum + (s.duration ?? 0), 0) : null;
  const audio = (spec.audio ?? {}) as Record<string, unknown>;
  const ticks = (audio.tracks ?? {}) as Record<string, unknown>;
  const clips = Array.isArray(audio.clips) ? (audio.clips as Record<string, unknown>[]) : [];
  const tracks = TRACKS.map((type) => {
    const mine = clips.filter((c) => c?.type === type);
    const lengths = mine.map((c) => num(c.duration));
    const seconds = mine.length && lengths.every((l) => l !== null) ? lengths.reduce((a, b) => (a ?? 0) + (b ?? 0), 0) : null;
    const looped = mine.some((c) => c.loop === true);
    const count = `${mine.length} clip${mine.length === 1 ? "" : "s"}`;
    const length = looped ? ", looped to the scene's end" : seconds !== null ? `, ${seconds.toFixed(1)} s` : "";
    return {
      type,
      label: LABELS[type],
      enabled: ticks[type] !== false,
      clips: mine.length,
      seconds,
      describe: count + length,
    };
  });
  return {
    segments,
    duration,
    durationText: duration === null ? "length known after probing" : `${duration.toFixed(2)} s`,
    tracks,
  };
}

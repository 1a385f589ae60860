// What the New render screen reads from a spec before sending it (node --test; run by
// tests/unit/test_web_types.py). specview.ts is bundled on the fly, as the page's build does.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const dir = await mkdtemp(join(tmpdir(), "specview-"));
after(() => rm(dir, { recursive: true, force: true }));
await esbuild.build({
  entryPoints: [fileURLToPath(new URL("../src/specview.ts", import.meta.url))],
  bundle: true,
  format: "esm",
  outfile: join(dir, "specview.mjs"),
  logLevel: "warning",
});
const { parseSpecText, summarize } = await import(join(dir, "specview.mjs"));

const where = (text) => parseSpecText(text).problems.map((p) => p.path)[0];

test("broken JSON is located by line and column", () => {
  assert.equal(where('{"version": 1,\n  "segments": [}'), "line 2, column 16");
  assert.equal(where('{"a": 1,}'), "line 1, column 9");
  assert.equal(where('{"a": tru}'), "line 1, column 10");
  assert.equal(where('{\n\n  "a": "x\\q"}'), "line 3, column 11");
  assert.equal(where('{"a": 1} x'), "line 1, column 10");
  assert.equal(where('{"a": -}'), "line 1, column 7");
  assert.equal(where("[1,2"), "line 1, column 5");
});

test("valid JSON that is not an object is refused; an object is read", () => {
  assert.equal(parseSpecText("[1]").data, null);
  assert.deepEqual(parseSpecText('{"version": 1}').data, { version: 1 });
  assert.deepEqual(parseSpecText("  ").problems, []);
});

test("segments, the scene's length, and each track's clips and length", () => {
  const s = summarize({
    segments: [
      { id: "a", url: "x", duration: 2 },
      { id: "b", url: "y", duration: 1.5 },
    ],
    audio: {
      tracks: { sfx: false },
      clips: [
        { type: "dialogue", url: "d1", duration: 1.25 },
        { type: "dialogue", url: "d2", duration: 2 },
        { type: "music", url: "m", loop: true },
        { type: "narration", url: "n" },
        { type: "sfx", url: "s", duration: 0.4 },
      ],
    },
  });
  assert.equal(s.duration, 3.5);
  assert.equal(s.durationText, "3.50 s");
  const by = Object.fromEntries(s.tracks.map((t) => [t.type, t]));
  assert.equal(by.dialogue.describe, "2 clips, 3.3 s");
  assert.equal(by.music.describe, "1 clip, looped to the scene's end");
  assert.equal(by.narration.describe, "1 clip");
  assert.equal(by.sfx.enabled, false);
  assert.equal(by.dialogue.enabled, true);
});

test("a segment without a duration leaves the scene's length to the probe", () => {
  const s = summarize({ segments: [{ id: "a", url: "x", duration: 2 }, { id: "b", url: "y" }] });
  assert.equal(s.duration, null);
  assert.match(s.segments[1].durationText, /end of its source/);
});

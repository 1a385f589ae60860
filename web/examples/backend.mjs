// A studio backend on Node, built on the page's own typed client (web/src/client.ts): sign in,
// submit a spec, follow the job with its Firestore listener, download the MP4. Run by
// tests/integration/test_web.py against the local cloud; usable as a starting point.
//
//   node web/examples/backend.mjs CONFIG.json SPEC.json EMAIL PASSWORD OUT.mp4
//
// CONFIG.json is the page's config.json with `apiUrl` the API's own URL (a backend has no
// same-origin /api). Prints one JSON line: the job id, the statuses seen, the bytes written.
import { createWriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const web = dirname(dirname(fileURLToPath(import.meta.url)));
// The client as a Node ES module; firebase stays external, resolved from web/node_modules.
const built = join(web, "node_modules", ".scenerender", "client.mjs");
await mkdir(dirname(built), { recursive: true });
await esbuild.build({
  entryPoints: [join(web, "src", "client.ts")],
  bundle: true,
  platform: "node",
  format: "esm",
  packages: "external",
  outfile: built,
  logLevel: "warning",
});
const { SceneRenderClient, TERMINAL } = await import(built);

const [configPath, specPath, email, password, out] = process.argv.slice(2);
const client = new SceneRenderClient(
  JSON.parse(await readFile(configPath, "utf8")),
);
await client.signInOrSignUp(email, password);
const submitted = await client.submit(await readFile(specPath, "utf8"));
const statuses = [];
const job = await new Promise((resolve, reject) => {
  const stop = client.watch(
    submitted.job_id,
    (doc) => {
      if (doc && statuses.at(-1) !== doc.status) statuses.push(doc.status);
      if (doc && TERMINAL.has(doc.status)) {
        stop();
        resolve(doc);
      }
    },
    reject,
  );
});
let bytes = 0;
if (job.status === "COMPLETED") {
  // Written to a temp file beside OUT, renamed once whole: OUT is never a half-written MP4.
  const part = `${out}.part-${process.pid}`;
  try {
    const mp4 = await client.download(job);
    await pipeline(Readable.fromWeb(mp4.stream()), createWriteStream(part));
    await rename(part, out);
  } finally {
    await rm(part, { force: true });
  }
  bytes = (await stat(out)).size;
}
console.log(
  JSON.stringify({
    job_id: submitted.job_id,
    uid: client.user.uid,
    statuses,
    bytes,
    error: job.error ?? null,
  }),
);
process.exit(0); // the Firestore and Auth clients keep their channels open

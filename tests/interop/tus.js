// Drives tus-js-client (the reference tus 1.0 client) for tests/tus.rs.
//
//   node tus.js MANIFEST.json  ->  prints one JSON line: {"steps": [...], "mediaId": ...}
//
// The manifest names a file and a list of steps, run in order against possibly different
// replicas. Each step resumes the same upload through `uploadUrl` (HEAD, then PATCH from the
// offset the server reports), and may stop early:
//   { "endpoint": "http://127.0.0.1:PORT",   // replica for this step
//     "chunkSize": 1048576,                  // bytes per PATCH (omit: whole rest in one PATCH)
//     "abortAfterChunks": 1,                 // stop cleanly after N acknowledged PATCHes
//     "abortAtBytes": 3000000 }              // cut the connection mid-PATCH after this many
//                                            // more bytes were handed to the socket
"use strict";

const fs = require("fs");
const tus = require("tus-js-client");

function runStep(manifest, data, step, uploadUrl) {
  return new Promise((resolve, reject) => {
    let chunks = 0;
    let startOffset = null;
    let mediaId = null;
    let settled = false;
    const finish = (result) => {
      if (!settled) {
        settled = true;
        resolve(result);
      }
    };
    const upload = new tus.Upload(data, {
      endpoint: `${step.endpoint}/v1/uploads/`,
      uploadUrl: uploadUrl ? `${step.endpoint}${new URL(uploadUrl).pathname}` : null,
      chunkSize: step.chunkSize || Infinity,
      headers: { Authorization: `Bearer ${manifest.key}` },
      metadata: { kind: manifest.kind, format: manifest.format, sha256: manifest.sha256 },
      // 409 (another replica still holds the upload) is retried by the client after a HEAD.
      retryDelays: [100, 250, 500, 1000, 2000, 3000, 5000],
      storeFingerprintForResuming: false,
      onAfterResponse: (req, res) => {
        const id = res.getHeader("Media-Id");
        if (id) mediaId = id;
        // The offset of the last HEAD is where this step really resumed (an earlier HEAD
        // may predate the previous replica's commit, answered by a 409 and a retry).
        const off = res.getHeader("Upload-Offset");
        if (off !== undefined && req.getMethod() === "HEAD") {
          startOffset = Number(off);
        }
      },
      onChunkComplete: () => {
        chunks += 1;
        if (step.abortAfterChunks && chunks >= step.abortAfterChunks) {
          upload.abort().then(() =>
            finish({ done: false, url: upload.url, startOffset, mediaId }),
          );
        }
      },
      onProgress: (sent) => {
        if (step.abortAtBytes != null && sent - (startOffset || 0) >= step.abortAtBytes) {
          step.abortAtBytes = null;
          upload.abort().then(() =>
            finish({ done: false, url: upload.url, startOffset, mediaId }),
          );
        }
      },
      onSuccess: () => finish({ done: true, url: upload.url, startOffset, mediaId }),
      onError: (err) => {
        if (!settled) {
          settled = true;
          reject(err);
        }
      },
    });
    upload.start();
  });
}

async function main() {
  const manifest = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const data = fs.readFileSync(manifest.file);
  let url = manifest.uploadUrl || null;
  const steps = [];
  let mediaId = null;
  for (const step of manifest.steps) {
    const r = await runStep(manifest, data, step, url);
    url = r.url || url;
    mediaId = r.mediaId || mediaId;
    steps.push(r);
  }
  process.stdout.write(JSON.stringify({ steps, mediaId, url }) + "\n");
}

main().catch((err) => {
  process.stderr.write(`tus.js: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});

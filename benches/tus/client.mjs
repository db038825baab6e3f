// tus client for benches/tus/run.sh: uploads files with tus-js-client (Node), all at once,
// each in one PATCH (chunkSize Infinity), and prints one JSON line with the timings.
//
//   node client.mjs --endpoint http://127.0.0.1:PORT/v1/uploads/ [--key KEY] FILE...
//
// * Every FILE becomes its own upload; they all start together (N files = N concurrent
//   uploads). Use distinct files: interop-media deduplicates identical blobs.
// * Upload-Metadata: kind=document, format=opaque, sha256=<hex SHA-256 of the file> (the keys
//   interop-media requires; @tus/server stores and ignores them). The digest is read from
//   FILE.sha256 when that exists (hex, as `sha256sum` prints), else computed before the clock
//   starts.
// * --key adds `Authorization: Bearer KEY` to every request.
// * No retries (retryDelays: []): a failing upload fails the run instead of being hidden.
// * The clock runs from upload.start() (POST creation) to onSuccess (the final PATCH's 204).
//   MB = 10^6 bytes.
//
// Output (stdout, one line): {"uploads":N,"bytes":…,"seconds":…,"mb_per_s":…,
//   "per_upload":[{"file":…,"bytes":…,"seconds":…,"mb_per_s":…,"url":…,"media_id":…}]}
// `seconds`/`mb_per_s` at the top are wall-clock for the whole batch (aggregate throughput).
// Exit code 1 if any upload failed (the error, with the server's response, goes to stderr).
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import process from 'node:process'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'

import * as tus from 'tus-js-client'

const { values: opts, positionals: files } = parseArgs({
  allowPositionals: true,
  options: {
    endpoint: { type: 'string' },
    key: { type: 'string' },
    kind: { type: 'string', default: 'document' },
    format: { type: 'string', default: 'opaque' },
  },
})
if (!opts.endpoint || files.length === 0) {
  console.error('usage: node client.mjs --endpoint URL [--key KEY] FILE...')
  process.exit(2)
}

async function sha256Hex(file) {
  try {
    const hex = (await readFile(`${file}.sha256`, 'utf8')).trim().split(/\s+/)[0]
    if (/^[0-9a-f]{64}$/i.test(hex)) return hex.toLowerCase()
  } catch {
    // no sidecar: compute
  }
  const h = createHash('sha256')
  await pipeline(fs.createReadStream(file), h)
  return h.digest('hex')
}

function uploadOne(file, size, digest) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const upload = new tus.Upload(fs.createReadStream(file), {
      endpoint: opts.endpoint,
      chunkSize: Number.POSITIVE_INFINITY,
      retryDelays: [],
      headers: opts.key ? { Authorization: `Bearer ${opts.key}` } : {},
      metadata: { kind: opts.kind, format: opts.format, sha256: digest },
      storeFingerprintForResuming: false,
      removeFingerprintOnSuccess: false,
      onError(err) {
        reject(new Error(`${file}: ${err?.message ?? err}`))
      },
      onSuccess(payload) {
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9
        const res = payload?.lastResponse
        resolve({
          file,
          bytes: size,
          seconds,
          mb_per_s: size / 1e6 / seconds,
          url: upload.url,
          media_id: res?.getHeader('Media-Id') ?? null,
          offset: res?.getHeader('Upload-Offset') ?? null,
        })
      },
    })
    upload.start()
  })
}

const prepared = []
for (const file of files) {
  const { size } = await stat(file)
  prepared.push({ file, size, digest: await sha256Hex(file) })
}

const t0 = process.hrtime.bigint()
const results = await Promise.allSettled(prepared.map((p) => uploadOne(p.file, p.size, p.digest)))
const seconds = Number(process.hrtime.bigint() - t0) / 1e9

const ok = results.filter((r) => r.status === 'fulfilled').map((r) => r.value)
const failed = results.filter((r) => r.status === 'rejected').map((r) => String(r.reason?.message ?? r.reason))
for (const f of failed) console.error(`upload failed: ${f}`)
const bytes = ok.reduce((a, r) => a + r.bytes, 0)
const round = (x, d = 3) => Math.round(x * 10 ** d) / 10 ** d
console.log(
  JSON.stringify({
    uploads: files.length,
    ok: ok.length,
    failed: failed.length,
    bytes,
    seconds: round(seconds),
    mb_per_s: round(bytes / 1e6 / seconds, 2),
    per_upload: ok.map((r) => ({ ...r, seconds: round(r.seconds), mb_per_s: round(r.mb_per_s, 2) })),
    errors: failed,
  }),
)
process.exit(failed.length > 0 ? 1 : 0)

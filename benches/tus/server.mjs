// The reference tus server for benches/tus/run.sh: @tus/server with @tus/s3-store on an
// S3-compatible endpoint (path-style), listening on 127.0.0.1.
//
//   S3_ENDPOINT=http://127.0.0.1:PORT S3_BUCKET=b S3_ACCESS_KEY_ID=… S3_SECRET_ACCESS_KEY=… \
//     node server.mjs [--port 0] [--path /files/]
//
// Prints `listening on 127.0.0.1:PORT` once it accepts (port 0 picks a free port, as
// `interop-media serve --listen 127.0.0.1:0` does). Uploads are at http://127.0.0.1:PORT/files/.
//
// Store settings: partSize 8 MiB (interop-media's default `storage.part_size_mib`); everything
// else is @tus/s3-store's default (it spools each part to a temp file under os.tmpdir(), i.e.
// $TMPDIR, and uploads up to `maxConcurrentPartUploads` = 60 parts at once, shared by all
// uploads). TUS_MAX_CONCURRENT_PART_UPLOADS overrides that last one.
import http from 'node:http'
import process from 'node:process'
import { parseArgs } from 'node:util'

import { S3Store } from '@tus/s3-store'
import { Server } from '@tus/server'

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    path: { type: 'string', default: '/files/' },
  },
})

function env(name, fallback) {
  const v = process.env[name] ?? fallback
  if (v === undefined || v === '') {
    console.error(`server.mjs: ${name} is not set`)
    process.exit(2)
  }
  return v
}

const MIB = 1024 * 1024
const storeOptions = {
  partSize: 8 * MIB,
  s3ClientConfig: {
    bucket: env('S3_BUCKET'),
    region: env('S3_REGION', 'us-east-1'),
    endpoint: env('S3_ENDPOINT'),
    forcePathStyle: true,
    credentials: {
      accessKeyId: env('S3_ACCESS_KEY_ID'),
      secretAccessKey: env('S3_SECRET_ACCESS_KEY'),
    },
  },
}
if (process.env.TUS_MAX_CONCURRENT_PART_UPLOADS) {
  storeOptions.maxConcurrentPartUploads = Number(process.env.TUS_MAX_CONCURRENT_PART_UPLOADS)
}

const tus = new Server({
  path: opts.path.replace(/\/+$/, '') || '/',
  datastore: new S3Store(storeOptions),
  // Location: /files/<id> rather than an absolute URL built from Host.
  relativeLocation: true,
  onResponseError(_req, err) {
    console.error('tus error:', err)
  },
})

const httpServer = http.createServer((req, res) => {
  tus.handle(req, res).catch((err) => {
    console.error('tus handle failed:', err)
    if (!res.headersSent) res.writeHead(500)
    res.end()
  })
})
// 256 MiB PATCHes take longer than Node's default 5 min request timeout on a slow box.
httpServer.requestTimeout = 0

httpServer.listen(Number(opts.port), '127.0.0.1', () => {
  const { address, port } = httpServer.address()
  console.log(`listening on ${address}:${port}`)
})

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    httpServer.close()
    httpServer.closeAllConnections()
    process.exit(0)
  })
}

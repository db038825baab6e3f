// Minimal S3 helper for benches/tus/run.sh, with the @aws-sdk/client-s3 that @tus/s3-store
// already depends on (SigV4, path-style).
//
//   S3_ENDPOINT=… S3_ACCESS_KEY_ID=… S3_SECRET_ACCESS_KEY=… node s3.mjs mb BUCKET...
//   …                                                      node s3.mjs size BUCKET KEY
//
// `mb` creates buckets (an existing one owned by us is fine); `size` prints an object's
// Content-Length (HEAD object).
import process from 'node:process'

import { CreateBucketCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3'

const [cmd, ...args] = process.argv.slice(2)
for (const name of ['S3_ENDPOINT', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY']) {
  if (!process.env[name]) {
    console.error(`s3.mjs: ${name} is not set`)
    process.exit(2)
  }
}
const client = new S3Client({
  endpoint: process.env.S3_ENDPOINT,
  region: process.env.S3_REGION || 'us-east-1',
  forcePathStyle: true,
  credentials: {
    accessKeyId: process.env.S3_ACCESS_KEY_ID,
    secretAccessKey: process.env.S3_SECRET_ACCESS_KEY,
  },
})

if (cmd === 'mb' && args.length > 0) {
  for (const bucket of args) {
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }))
    } catch (err) {
      if (err?.name !== 'BucketAlreadyOwnedByYou') throw err
    }
    console.log(`bucket ${bucket}`)
  }
} else if (cmd === 'size' && args.length === 2) {
  const head = await client.send(new HeadObjectCommand({ Bucket: args[0], Key: args[1] }))
  console.log(head.ContentLength)
} else {
  console.error('usage: node s3.mjs mb BUCKET... | node s3.mjs size BUCKET KEY')
  process.exit(2)
}

// Independent peers for tests/interop_formats.rs. One process per direction, all cases batched:
//   node peer.js <command> <manifest.json> <result.json>
// Commands:
//   wa-encrypt     Baileys encryptedStream() encrypts each plaintext file
//   wa-decrypt     Baileys getMediaKeys() + downloadEncryptedContent() (over a loopback HTTP server
//                  with Range support) decrypts each blob; the MAC and digests Baileys never checks
//                  are computed here from Baileys' own keys and returned for the Rust side to assert
//   signal-encrypt Signal's mock-server encryptAttachment() encrypts (unpadded, and padded to
//                  Signal-Desktop's logPadSize buckets)
//   signal-check   verifies and decrypts our Signal blobs with node:crypto, and re-encrypts with
//                  mock-server's encryptAttachment() under our key and IV for a byte comparison
//   signal-incmac  libsignal-client DigestingPassThrough / ValidatingPassThrough over our blobs
//   signal-padsize Signal-Desktop's logPadSize() for a list of sizes
'use strict';
const fs = require('node:fs');
const http = require('node:http');
const crypto = require('node:crypto');
const { pipeline } = require('node:stream/promises');
const { Readable, Writable } = require('node:stream');

const [, , command, manifestPath, resultPath] = process.argv;
const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
const b64 = (buf) => Buffer.from(buf).toString('base64');
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest();

// Signal-Desktop ts/util/logPadSize.std.ts, verbatim semantics.
function logPadSize(size) {
  return Math.max(541, Math.floor(1.05 ** Math.ceil(Math.log(size) / Math.log(1.05))));
}

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

// Baileys media types for our kinds (voice notes are "ptt").
const BAILEYS_TYPE = { image: 'image', sticker: 'sticker', voice: 'ptt', audio: 'audio', video: 'video', document: 'document' };

async function waEncrypt() {
  const { encryptedStream } = require('@whiskeysockets/baileys');
  const out = [];
  for (const c of manifest.cases) {
    const r = await encryptedStream({ url: c.plain }, BAILEYS_TYPE[c.kind], {});
    const blob = await collect(r.encWriteStream);
    fs.writeFileSync(c.blob, blob);
    out.push({
      id: c.id,
      media_key: b64(r.mediaKey),
      file_sha256: b64(r.fileSha256),
      file_enc_sha256: b64(r.fileEncSha256),
      file_length: r.fileLength,
      mac: b64(r.mac),
    });
  }
  return out;
}

function serveFiles() {
  // Minimal loopback file server with single-range support, as a media host would answer.
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').searchParams.get('f'));
    const data = fs.readFileSync(path);
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    if (m) {
      const start = Number(m[1]);
      const end = m[2] === '' ? data.length - 1 : Math.min(Number(m[2]), data.length - 1);
      res.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${data.length}`, 'Content-Length': end - start + 1 });
      res.end(data.subarray(start, end + 1));
    } else {
      res.writeHead(200, { 'Content-Length': data.length });
      res.end(data);
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function waDecrypt() {
  const { getMediaKeys, downloadEncryptedContent } = require('@whiskeysockets/baileys');
  const server = await serveFiles();
  const base = `http://127.0.0.1:${server.address().port}/blob?f=`;
  const out = [];
  try {
    for (const c of manifest.cases) {
      const keys = await getMediaKeys(Buffer.from(c.media_key, 'base64'), BAILEYS_TYPE[c.kind]);
      const url = base + encodeURIComponent(c.blob);
      const plain = await collect(await downloadEncryptedContent(url, keys));
      const blob = fs.readFileSync(c.blob);
      const body = blob.subarray(0, blob.length - 10);
      const mac = crypto.createHmac('sha256', keys.macKey).update(keys.iv).update(body).digest().subarray(0, 10);
      const ranges = [];
      for (const [startByte, endByte] of c.ranges || []) {
        const part = await collect(await downloadEncryptedContent(url, keys, { startByte, endByte }));
        ranges.push({ start: startByte, end: endByte, sha256: b64(sha256(part)), length: part.length });
      }
      out.push({
        id: c.id,
        iv: b64(keys.iv),
        cipher_key: b64(keys.cipherKey),
        mac_key: b64(keys.macKey),
        plain_sha256: b64(sha256(plain)),
        plain_length: plain.length,
        mac_ok: crypto.timingSafeEqual(mac, blob.subarray(blob.length - 10)),
        enc_sha256: b64(sha256(blob)),
        ranges,
      });
    }
  } finally {
    server.close();
  }
  return out;
}

function signalEncrypt() {
  const { encryptAttachment } = require('@signalapp/mock-server/src/crypto.js');
  return manifest.cases.map((c) => {
    const plain = fs.readFileSync(c.plain);
    // mock-server encrypts exactly what it is given; Signal-Desktop first pads to logPadSize.
    const input = c.padded ? Buffer.concat([plain, Buffer.alloc(logPadSize(plain.length) - plain.length)]) : plain;
    const a = encryptAttachment(input);
    fs.writeFileSync(c.blob, a.blob);
    return { id: c.id, key: b64(a.key), digest: b64(a.digest), size: plain.length, plaintext_sha256: b64(sha256(plain)) };
  });
}

function signalCheck() {
  const { encryptAttachment } = require('@signalapp/mock-server/src/crypto.js');
  return manifest.cases.map((c) => {
    const key = Buffer.from(c.key, 'base64');
    const aesKey = key.subarray(0, 32);
    const macKey = key.subarray(32, 64);
    const blob = fs.readFileSync(c.blob);
    const iv = blob.subarray(0, 16);
    const ct = blob.subarray(16, blob.length - 32);
    const theirMac = blob.subarray(blob.length - 32);
    const mac = crypto.createHmac('sha256', macKey).update(iv).update(ct).digest();
    const decipher = crypto.createDecipheriv('aes-256-cbc', aesKey, iv);
    const padded = Buffer.concat([decipher.update(ct), decipher.final()]);
    const plain = padded.subarray(0, c.size);
    const original = fs.readFileSync(c.plain);
    const reference = encryptAttachment(
      Buffer.concat([original, Buffer.alloc(logPadSize(original.length) - original.length)]),
      { aesKey, macKey, iv },
    );
    return {
      id: c.id,
      mac_ok: crypto.timingSafeEqual(mac, theirMac),
      digest: b64(sha256(blob)),
      padded_length: padded.length,
      plain_sha256: b64(sha256(plain)),
      mock_server_blob_equal: Buffer.compare(reference.blob, blob) === 0,
      mock_server_digest: b64(reference.digest),
    };
  });
}

async function signalIncmac() {
  const im = require('@signalapp/libsignal-client/dist/incremental_mac.js');
  const out = [];
  for (const c of manifest.cases) {
    const macKey = Buffer.from(c.key, 'base64').subarray(32, 64);
    const blob = fs.readFileSync(c.blob);
    const choice = im.inferChunkSize(blob.length);
    const digester = new im.DigestingPassThrough(macKey, choice);
    const pieces = [];
    for (let i = 0; i < blob.length; i += 100000) pieces.push(blob.subarray(i, i + 100000));
    await pipeline(Readable.from(pieces), digester, new Writable({ write(_c, _e, cb) { cb(); } }));
    let validated = false;
    let validatedBad = true;
    try {
      const v = new im.ValidatingPassThrough(macKey, im.everyNthByte(c.chunk_size), Buffer.from(c.digests, 'base64'));
      const got = await collect(Readable.from(pieces).pipe(v));
      validated = Buffer.compare(got, blob) === 0;
    } catch (e) {
      validated = false;
    }
    try {
      const bad = Buffer.from(c.digests, 'base64');
      bad[0] ^= 1;
      const v = new im.ValidatingPassThrough(macKey, im.everyNthByte(c.chunk_size), bad);
      await collect(Readable.from(pieces).pipe(v));
    } catch (e) {
      validatedBad = false;
    }
    out.push({
      id: c.id,
      chunk_size: im.chunkSizeInBytes(choice),
      digests: b64(digester.getFinalDigest()),
      validates_ours: validated,
      accepts_tampered: validatedBad,
    });
  }
  return out;
}

function signalPadsize() {
  return manifest.sizes.map((s) => logPadSize(s));
}

const COMMANDS = {
  'wa-encrypt': waEncrypt,
  'wa-decrypt': waDecrypt,
  'signal-encrypt': signalEncrypt,
  'signal-check': signalCheck,
  'signal-incmac': signalIncmac,
  'signal-padsize': signalPadsize,
};

(async () => {
  const f = COMMANDS[command];
  if (!f) throw new Error(`unknown command ${command}`);
  const result = await f();
  fs.writeFileSync(resultPath, JSON.stringify({ command, result }));
})().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});

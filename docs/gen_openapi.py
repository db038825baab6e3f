#!/usr/bin/env python3
"""Generates docs/openapi.json, the API contract served at /openapi.json.

Usage: python3 docs/gen_openapi.py [OUT]   (default: openapi.json next to this script)

Edit this script, never the JSON; regenerate, then check with
`openapi-spec-validator docs/openapi.json` and `cargo test --test openapi`.
"""
import base64
import hashlib
import json
import os
import sys

# (code, status, meaning) in the order of src/error.rs
CODES = [
    ("unauthenticated", 401, "Missing, malformed or unknown partner API key (`WWW-Authenticate: Bearer`)."),
    ("forbidden", 403, "The API key lacks the scope this operation needs (`upload`, `token`, `delete`, `seal`)."),
    ("unknown-kind", 400, "`X-Media-Kind` (tus: the `kind` of `Upload-Metadata`) is not one of image, sticker, voice, audio, video, document."),
    ("unknown-format", 400, "`X-Media-Format` (tus: the `format` of `Upload-Metadata`) is not one of whatsapp, signal, opaque."),
    ("malformed-digest", 400, "`X-Media-Sha256` (tus: the `sha256` of `Upload-Metadata`) is not a SHA-256 digest as 64 hex digits or base64 (including values that are not ASCII)."),
    ("missing-header", 400, "A required header is missing (`X-Media-Kind` and `X-Media-Format` also when not visible ASCII; tus: `Upload-Length`, `Upload-Offset`)."),
    ("malformed-json", 400, "The JSON body is not valid JSON, not `application/json`, has unknown fields or wrong types."),
    ("invalid-field", 400, "A field, header or query parameter has a value outside its allowed range (`audience`, `audiences` — empty, or an entry outside `[A-Za-z0-9._:-]{1,32}` —, `ttl_s`, `content-length`, `seal`; tus: `upload-length`, `upload-offset`, `upload-metadata`, `upload-checksum`, and `upload-defer-length`, which is not supported), or the query string is malformed (`query`)."),
    ("malformed-metadata", 400, "tus `Upload-Metadata` is not comma-separated `key base64value` pairs with unique keys, is longer than 4096 bytes, or lacks `kind`, `format` or `sha256` (as UTF-8)."),
    ("checksum-algorithm-unsupported", 400, "tus `Upload-Checksum` names an algorithm other than `sha256`."),
    ("media-not-found", 404, "No such media for this caller (another partner's media is indistinguishable from none), or the media a token names was deleted or replaced."),
    ("not-found", 404, "No such route: the path is not one of this API's."),
    ("method-not-allowed", 405, "The path exists but does not serve this method; `Allow` lists the methods it does serve."),
    ("not-implemented", 501, "The feature is part of the API but turned off in this deployment: seal-for-me upload (`?seal=`) with `media.workers = 0`."),
    ("media-expired", 410, "The media's retention has ended."),
    ("token-invalid", 401, "The download token is malformed, tampered with, or not yet valid."),
    ("too-many-audiences", 400, "A fan-out token request names more audiences than `tokens.max_audiences` (256 by default); nothing was minted."),
    ("duplicate-audience", 400, "A fan-out token request names the same audience twice; nothing was minted."),
    ("token-expired", 401, "The download token has expired (after the configured clock-skew allowance)."),
    ("token-unknown-key", 401, "The download token was signed with a key id this service does not (or no longer) know."),
    ("too-large", 413, "The declared (or, for chunked bodies, received) length exceeds the media kind's limit (`limits.sealed.*`; seal-for-me: the plaintext limit `limits.seal.*`), or a JSON body exceeds 4096 bytes; tus: `Upload-Length` exceeds the kind's limit, or a `PATCH` body goes past `Upload-Length`."),
    ("length-mismatch", 400, "The body is longer or shorter than `Content-Length`."),
    ("digest-mismatch", 422, "The SHA-256 of the received bytes differs from `X-Media-Sha256` (tus: from the `sha256` of `Upload-Metadata`, checked when the last byte arrives; the upload is discarded); nothing was stored."),
    ("format-invalid", 422, "The blob's length (tus: `Upload-Length`) cannot be a blob of the declared `X-Media-Format`; nothing was stored."),
    ("range-not-satisfiable", 416, "The `Range` selects no byte of the blob (`Content-Range: bytes */<size>`)."),
    ("body-timeout", 408, "The request body sent nothing for longer than `server.body_idle_timeout_s`."),
    ("body-too-slow", 408, "The request body arrived slower on average than `limits.uploads.min_rate_kib_s`, judged over each `limits.uploads.rate_window_s` of waiting for the client; nothing of it was stored (tus: what arrived before is kept)."),
    ("uploads-busy", 503, "The service's upload memory budget (`limits.uploads.memory_mib`) or its count of concurrent uploads (`limits.uploads.max_concurrent`) stayed full for `limits.uploads.wait_ms`; the body was not read (`Connection: close`) and nothing was stored; retry after `Retry-After` seconds."),
    ("partner-upload-limit", 429, "The caller's uploads hold all of its share of upload memory (`limits.uploads.partner_memory_mib`) for `limits.uploads.wait_ms`; the body was not read (`Connection: close`) and nothing was stored; retry after `Retry-After` seconds."),
    ("body-aborted", 400, "The request body could not be read (client went away, malformed chunked encoding)."),
    ("upload-not-found", 404, "No such tus upload for this caller: never created, terminated, discarded after `digest-mismatch`, swept, another partner's (indistinguishable from none), sealed under a retired key, or an id that is not 32 lower-case hex digits."),
    ("upload-expired", 410, "The unfinished tus upload is past its `Upload-Expires`."),
    ("upload-offset-mismatch", 409, "tus `Upload-Offset` differs from the upload's offset (the detail names it; `HEAD` reports it), or the upload is already complete."),
    ("upload-busy", 409, "Another tus request (on any replica) holds the upload; retry after a `HEAD`. A replica that died mid-`PATCH` holds it for at most `uploads.lease_s`."),
    ("checksum-mismatch", 460, "The SHA-256 of the `PATCH` body differs from `Upload-Checksum`; nothing of that body was kept (tus's own status 460)."),
    ("tus-version-unsupported", 412, "`Tus-Resumable` is missing or not `1.0.0` (`Tus-Version: 1.0.0` says what is spoken)."),
    ("unsupported-content-type", 415, "A tus `PATCH` (or a `POST` creation with a body) is not `application/offset+octet-stream`."),
    ("media-type-not-allowed", 415, "Seal-for-me: the type sniffed from the body's magic bytes (named in the detail) is not on the allow-list of `X-Media-Kind`; nothing was stored."),
    ("media-limits-exceeded", 422, "Seal-for-me: an image declares more pixels or a longer side than `media.max_pixels` / `media.max_dimension` (checked before decoding), or audio or video lasts longer than `media.max_duration_s`; nothing was stored."),
    ("media-undecodable", 422, "Seal-for-me: the media is truncated, corrupt or hostile, or the sandboxed worker decoding it crashed, ran out of memory or missed its deadline; nothing was stored."),
    ("media-busy", 503, "Seal-for-me: every media worker stayed busy for `media.queue_wait_ms`; retry after `Retry-After` seconds."),
    ("storage-unavailable", 503, "The object store failed or timed out; retry after `Retry-After` seconds."),
    ("shutting-down", 503, "This replica is draining after SIGTERM (uploads only, tus `POST` and `PATCH` included); retry (another replica) after `Retry-After` seconds."),
    ("internal", 500, "Unexpected failure (e.g. a stored object failed to decrypt). No detail is given."),
    ("malformed-request", 400, "The request could not be parsed below the API's own checks (e.g. a malformed path, query or body that the framework refused)."),
    ("request-timeout", 408, "The request head or body did not arrive in time."),
    ("length-required", 411, "The request needs a `Content-Length`."),
    ("uri-too-long", 414, "The request target is too long."),
    ("headers-too-large", 431, "The request headers are too large."),
]
STATUS = {c: s for c, s, _ in CODES}

REASON = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    412: "Precondition Failed", 413: "Payload Too Large", 415: "Unsupported Media Type",
    411: "Length Required", 414: "URI Too Long", 416: "Range Not Satisfiable",
    422: "Unprocessable Entity", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    460: "Checksum Mismatch",  # tus's own status; `title` is this, the status line has no reason
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
}

DETAIL = {
    "unauthenticated": "missing or invalid API key",
    "forbidden": "this API key lacks the `upload` scope",
    "missing-header": "missing header x-media-sha256",
    "malformed-json": "malformed JSON body: Content type error",
    "invalid-field": "invalid field `audience`",
    "not-found": "no such route",
    "method-not-allowed": "method not allowed; this path serves POST",
    "media-not-found": "no such media",
    "media-expired": "the media has expired",
    "token-invalid": "the download token is invalid",
    "too-many-audiences": "at most 256 audiences per token request",
    "duplicate-audience": "an audience is named twice in `audiences`",
    "too-large": "99999999 bytes exceed the image limit of 5767168 bytes",
    "digest-mismatch": "the SHA-256 of the received bytes does not match the declared digest",
    "range-not-satisfiable": "the requested range cannot be satisfied",
    "malformed-metadata": "Upload-Metadata needs `sha256`",
    "checksum-algorithm-unsupported": "Upload-Checksum supports only sha256",
    "upload-not-found": "no such upload",
    "upload-expired": "the upload has expired",
    "upload-offset-mismatch": "Upload-Offset does not match the upload's offset of 5242880",
    "upload-busy": "another request is writing to this upload; retry after a HEAD",
    "checksum-mismatch": "the body does not match Upload-Checksum; nothing of it was kept",
    "tus-version-unsupported": "this server speaks tus 1.0.0; send Tus-Resumable: 1.0.0",
    "unsupported-content-type": "the body must be application/offset+octet-stream",
    "media-type-not-allowed": "the file is pdf, which is not an allowed image",
    "media-limits-exceeded": "20000x20000 exceeds the image limits",
    "media-undecodable": "the media could not be decoded",
}


def ref(kind, name):
    return {"$ref": f"#/components/{kind}/{name}"}


def example(code):
    status = STATUS[code]
    body = {
        "type": f"https://interop-media.dev/problems/{code}",
        "title": REASON[status],
        "status": status,
        "code": code,
    }
    if status < 500:
        body["detail"] = DETAIL.get(code, "…")
    return body


def problem_headers(*extra):
    """Headers of every problem answer, plus `extra` (names in components.headers)."""
    d = {
        "X-Request-Id": ref("headers", "X-Request-Id"),
        "X-Content-Type-Options": ref("headers", "X-Content-Type-Options"),
        "Cache-Control": ref("headers", "Cache-Control-Problem"),
    }
    for h in extra:
        d[h] = ref("headers", h)
    return d


def problem(description, codes, headers=None, extra_content=None, detail=None):
    statuses = {STATUS[c] for c in codes}
    assert len(statuses) == 1, codes
    status = statuses.pop()
    if status == 400 and "malformed-request" not in codes:
        # Any operation's request head may be refused by the HTTP layer before its own checks.
        codes = list(codes) + ["malformed-request"]
    schema = {
        "allOf": [
            ref("schemas", "Problem"),
            {"properties": {"status": {"const": status}, "code": {"enum": list(codes)}}},
        ]
    }
    content = {
        "application/problem+json": {
            "schema": schema,
            "example": example(codes[0]) | ({"detail": detail} if detail else {}),
        }
    }
    if extra_content:
        content.update(extra_content)
    resp = {
        "description": description + "\n\nCodes: " + ", ".join(f"`{c}`" for c in codes) + ".",
        "headers": problem_headers(),
        "content": content,
    }
    for h in headers or []:
        resp["headers"][h] = ref("headers", h)
    return str(status), resp


def errors(*entries):
    out = {}
    for e in entries:
        k, v = problem(*e) if isinstance(e, tuple) else e
        out[k] = v
    return out


R401 = ("The API key is missing or unknown.", ["unauthenticated"], ["WWW-Authenticate"])
R500 = ("Internal error; the body carries no detail.", ["internal"])
R503 = ("The object store is unavailable; retry later.", ["storage-unavailable"], ["Retry-After"])
R404 = ("No such media for this partner (also for ids that are not 32 lower-case hex digits, "
        "and for another partner's media).", ["media-not-found"])
R410 = ("The media has expired.", ["media-expired"])

MEDIA_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "Media id: 32 lower-case hex digits. Anything else answers 404 `media-not-found`.",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "example": "4f39a752c91a0cf4f2b61c5151ce9280",
}
TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "A download token as minted by `POST /v1/media/{id}/tokens` (base64url, no padding, "
                   "at most 200 characters). Anything else answers 401 `token-invalid`.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 200},
}

DOWNLOAD_HEADERS_COMMON = ["ETag", "Cache-Control", "X-Content-Type-Options", "Accept-Ranges"]


# components.headers that are variants of one header: component name -> header name.
HEADER_NAME = {
    "Location-Upload": "Location",
    "Cache-Control-No-Store": "Cache-Control",
    "Cache-Control-Sealed": "Cache-Control",
}


def hdrs(*names):
    """X-Request-Id plus `names` (components.headers), keyed by the header they describe."""
    d = {"X-Request-Id": ref("headers", "X-Request-Id")}
    for n in names:
        d[HEADER_NAME.get(n, n)] = ref("headers", n)
    return d


def download_op(method):
    head = method == "head"
    body = None if head else {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

    def ok(desc, extra=()):
        r = {"description": desc, "headers": hdrs("Content-Length", *DOWNLOAD_HEADERS_COMMON, *extra)}
        if head:
            r["headers"]["Content-Type"] = ref("headers", "Content-Type-Octet")
        elif body:
            r["content"] = body
        return r

    op = {
        "tags": ["download"],
        "operationId": "headDownload" if head else "download",
        "summary": ("Headers of the stored blob, as GET would send them" if head
                    else "Download the stored blob"),
        "description": (
            "Anyone holding a valid token may fetch the blob it names: the token is the capability, "
            "no API key is sent. The blob is returned exactly as it was uploaded (still end-to-end "
            "encrypted), as `application/octet-stream`, with `Cache-Control: private` and "
            "`X-Content-Type-Options: nosniff`.\n\n"
            "Conditional and partial requests:\n"
            "- `If-None-Match` is evaluated first: `*` or a matching (weakly compared) ETag answers 304.\n"
            "- A single `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` answers 206 with `Content-Range`; "
            "a range that starts at or past the end (or `bytes=-0`) answers 416. Multiple ranges, other "
            "units and syntactically invalid values are ignored (200, whole blob).\n"
            "- `If-Range` must equal the ETag exactly (strong comparison; HTTP-dates never match); "
            "otherwise `Range` is ignored and the whole blob is sent (200).\n\n"
            "The ETag is the quoted lower-case hex SHA-256 of the blob (the value given as "
            "`X-Media-Sha256` at upload), so it never changes for a media id.\n\n"
            + ("HEAD answers the status and headers GET would (including `Content-Length` and "
               "`Content-Range`) without reading the blob from storage."
               if head else
               "Should the store fail or a stored chunk fail to decrypt after the status line was "
               "sent, the connection is closed before `Content-Length` bytes were delivered.")
        ),
        "security": [],
        "parameters": [
            TOKEN,
            ref("parameters", "Range"),
            ref("parameters", "If-None-Match"),
            ref("parameters", "If-Range"),
            ref("parameters", "X-Request-Id"),
        ],
        "responses": {
            "200": ok("The whole blob."),
            "206": ok("The requested byte range.", ["Content-Range"]),
            "304": {
                "description": "`If-None-Match` matched; no body.",
                "headers": hdrs(*DOWNLOAD_HEADERS_COMMON),
            },
            **errors(
                ("The token is malformed, tampered with, expired or signed with an unknown key.",
                 ["token-invalid", "token-expired", "token-unknown-key"]),
                ("The media the token names no longer exists: deleted, replaced by a new upload "
                 "of the same content after deletion, or sealed under a retired key.", ["media-not-found"]),
                R410,
                ("The range selects nothing.", ["range-not-satisfiable"], ["Content-Range-Unsatisfied"]),
                R500,
                R503,
            ),
        },
    }
    if head:
        # HEAD answers carry no body, problem or not: the same statuses and headers as GET.
        no_problem_bodies(op["responses"])
    return op


def no_problem_bodies(responses):
    """HEAD: problem answers keep status, code list and headers, but carry no body."""
    for code, r in responses.items():
        if code.startswith(("4", "5")):
            r.pop("content", None)
            r["description"] += " HEAD answers carry no body."
            r["headers"]["Content-Type"] = ref("headers", "Content-Type-Problem")


def text_ok(desc, example_text, ctype="text/plain"):
    return {
        "description": desc,
        "headers": hdrs(),
        "content": {ctype: {"schema": {"type": "string"}, "example": example_text}},
    }


UPLOAD_DESC = """\
Two modes share this operation, told apart by the `seal` query parameter: **sealed upload**
(no `seal`, scope `upload`: the body is already end-to-end encrypted, the answer a `MediaInfo`)
and **seal-for-me** (`?seal=whatsapp|signal`, scope `seal`: the body is plaintext, the service
seals it and answers a `SealedMedia` carrying the key). Both end as the same kind of stored
media.

**Sealed upload** (default): the body is an attachment already end-to-end encrypted by the
sender's device; the service never sees plaintext or keys. Before anything becomes visible the
service checks, in this order:

1. the API key (401), the query string (400 `invalid-field`), scope `upload` (403), not
   draining (503 `shutting-down`), the `X-Media-*` headers (400);
2. with `Content-Length`: the declared length against the kind's limit (413 `too-large`) and the
   format's length rule (422 `format-invalid`), **before** the body is read;
3. while reading: no more than `Content-Length`, no more than the limit, no stall longer than
   `server.body_idle_timeout_s` (408);
4. at the end: exact length (400 `length-mismatch`), SHA-256 equals `X-Media-Sha256`
   (422 `digest-mismatch`), format length rule (422 `format-invalid`).

Format length rules: `whatsapp` length ≥ 26 and (length − 10) % 16 = 0; `signal` length ≥ 64 and
(length − 48) % 16 = 0; `opaque` any length, including 0.

Default limits per kind (bytes, `limits.sealed.*`): image 5767168, sticker 563200, voice and
audio 18454937, video and document 2362232012.

**Deduplication:** the media id is derived from (partner, kind, format, SHA-256). Uploading the
same blob again while the earlier one is retained answers **200** with the existing media (the
body is still read and verified, nothing is stored); otherwise **201** with
`Location: /v1/media/{id}`.

`Content-Type` of the request is not checked. The body is framed by `Content-Length` or
`Transfer-Encoding: chunked` (not both).

**Seal-for-me** (`?seal=whatsapp|signal`, scope `seal`): the body is the **plaintext**
attachment. The service checks and describes it, removes privacy-sensitive metadata from
photos, seals it in the format `seal` names (WhatsApp or Signal attachment encryption) under a
fresh random key, and stores the sealed blob exactly as a sealed upload of it would be stored.
The key is returned in the answer's body and nowhere else: the service does not store, log or
count it. `X-Media-Format` and `X-Media-Sha256` are ignored (the format is `seal`, the digests
are computed). Checked in this order:

1. the API key (401), the query string (400 `invalid-field`, field `query`), scope `seal` (403
   `forbidden`), the `seal` value (400 `invalid-field`, field `seal`), not draining (503
   `shutting-down`), `X-Media-Kind` (400 `missing-header`, `unknown-kind`), `Content-Length`
   (400 `invalid-field`);
2. seal-for-me turned off in this deployment (`media.workers = 0`): 501 `not-implemented`;
3. with `Content-Length`: the declared length against the kind's **plaintext** limit (413
   `too-large`), **before** the body is read;
4. while reading: no more than `Content-Length` (400 `length-mismatch`), no more than the limit
   (413 `too-large`, also for chunked bodies), no stall longer than
   `server.body_idle_timeout_s` (408); at the end: exact length (400 `length-mismatch`);
5. the type, sniffed from the magic bytes (never from a file name or `Content-Type`), against
   the kind's allow-list (415 `media-type-not-allowed`; the detail names the sniffed type):
   - `image`: JPEG, PNG, WebP, GIF
   - `sticker`: WebP
   - `voice`: Ogg Opus
   - `audio`: AAC, M4A, MP3, AMR, Ogg (Opus or Vorbis), WAV, FLAC
   - `video`: MP4, 3GP
   - `document`: any type
6. decoding, in a sandboxed worker process (bounded memory, CPU time and wall-clock time; no
   network, no exec): an image declaring more than `media.max_pixels` (50000000) pixels or a
   side longer than `media.max_dimension` (16384) is refused from its header, before decoding,
   as is audio or video lasting longer than `media.max_duration_s` (14400) (422
   `media-limits-exceeded`); truncated, corrupt or hostile input, and a worker that crashes,
   runs out of memory or misses its deadline, answer 422 `media-undecodable`; when every one of
   the `media.workers` stays busy for `media.queue_wait_ms`, 503 `media-busy` (`Retry-After`);
7. photos (`image`, `sticker`): EXIF, XMP, GPS and other embedded metadata are removed and
   listed in `removed`; other kinds are sealed byte for byte as received;
8. sealing under a fresh key and storing (503 `storage-unavailable` if the store fails).

Default plaintext limits per kind (bytes, `limits.seal.*`): image 5242880 (5 MiB), sticker
512000, voice, audio and video 16777216 (16 MiB), document 104857600 (100 MiB).

The answer is **201** with `Location: /v1/media/{id}`, `Cache-Control: no-store` and a
`SealedMedia` body: the media (`id`, `kind`, `format`, `created_at`, `expires_at`), what the
recipient's client needs to fetch and open it (`key`, plaintext `size` and `sha256`, blob
`enc_size` and `enc_sha256`, WhatsApp `sidecar`), what the pipeline learned (`mime`,
dimensions, duration, waveform, thumbnail, ...) and the same as a `descriptor`. Deduplication
works as for sealed uploads, but a fresh key makes a fresh blob, so a repeated seal-for-me
upload is a new media: 200 (with the same headers, for the existing media) would need an
identical blob and practically never happens.

The plaintext exists only in a private temporary directory (`media.tmp_dir`) while the request
runs, and is removed when it ends, however it ends. The stored media is an ordinary one: `GET
/v1/media/{id}` shows its `MediaInfo` (`size` = `enc_size`, `sha256` = `enc_sha256`), tokens
and downloads work as for sealed uploads, and what is downloaded is the sealed blob.
"""


# ---------------------------------------------------------------- seal-for-me (?seal=)

B64_32 = "^[A-Za-z0-9+/]{43}=$"  # 32 bytes, standard base64 with padding
B64_KEY = "^(?:[A-Za-z0-9+/]{43}=|[A-Za-z0-9+/]{86}==)$"  # 32 (WhatsApp) or 64 (Signal) bytes
HEX_32 = "^[0-9a-f]{64}$"

# src/pipeline/mod.rs `Analysis` (flattened into `SealedMedia`, and a descriptor's `metadata`).
# Optional members are omitted when unknown, never `null`.
ANALYSIS_REQUIRED = ["sniffed", "mime", "removed"]
ANALYSIS_PROPS = {
    "sniffed": {"type": "string",
                "description": "The type sniffed from the file's magic bytes, as a short stable name, "
                               "e.g. `jpeg`, `png`, `webp`, `gif`, `ogg-opus`, `mp3`, `mp4`, `pdf`.",
                "example": "jpeg"},
    "mime": {"type": "string",
             "description": "MIME type of the sniffed type (never taken from the request).",
             "example": "image/jpeg"},
    "width": {"type": "integer", "format": "int32", "minimum": 0,
              "description": "Width in pixels (images and stickers; video when known)."},
    "height": {"type": "integer", "format": "int32", "minimum": 0,
               "description": "Height in pixels (images and stickers; video when known)."},
    "duration_ms": {"type": "integer", "format": "int64", "minimum": 0,
                    "description": "Duration in milliseconds (audio, voice, video)."},
    "waveform": {"type": "array", "minItems": 64, "maxItems": 64,
                 "items": {"type": "integer", "minimum": 0, "maximum": 100},
                 "description": "Voice notes: 64 amplitude values, 0-100, like WhatsApp's waveform."},
    "thumbnail": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/jpeg",
                  "description": "A small JPEG preview (longest side `media.thumb_side`, 100 pixels "
                                 "by default), standard base64."},
    "blurhash": {"type": "string", "description": "BlurHash placeholder of the image (of the "
                                                  "video's first key frame for video).",
                 "example": "LEHV6nWB2yk8pyo0adR*.7kCMdnj"},
    "thumbnail_skipped": {"type": "string",
                          "enum": ["hevc-not-supported", "codec-not-supported",
                                   "profile-not-supported", "frame-too-large", "no-key-frame",
                                   "frame-undecodable", "decoder-failed"],
                          "description": "Video only, when it has no `thumbnail`: why. The upload "
                                         "itself succeeded. `hevc-not-supported` (HEVC), "
                                         "`codec-not-supported` (not H.264, e.g. H.263), "
                                         "`profile-not-supported` (H.264 beyond 8-bit 4:2:0 "
                                         "progressive, e.g. High 10), `frame-too-large` (over "
                                         "`media.max_pixels`/`max_dimension`), `no-key-frame` "
                                         "(the sample tables lead to none, e.g. fragmented MP4), "
                                         "`frame-undecodable` (the decoder refused the frame), "
                                         "`decoder-failed` (the decoder crashed or overran its "
                                         "deadline in the worker).",
                          "example": "hevc-not-supported"},
    "animated": {"type": "boolean", "description": "Images and stickers: whether the image is animated."},
    "audio": ref("schemas", "AudioInfo"),
    "video": ref("schemas", "VideoInfo"),
    "removed": {"type": "array", "items": {"type": "string"},
                "description": "Metadata removed from the file before sealing, e.g. `exif`, `xmp`, "
                               "`gps`. Only photos (`image`, `sticker`) are cleaned; empty when "
                               "nothing was removed, and then the plaintext was sealed byte for "
                               "byte as received.",
                "example": ["exif", "gps"]},
}

ANALYSIS_PRESENCE = """\
`sniffed`, `mime` and `removed` are always present; every other member is present only when the
pipeline learned it for this media (absent, never `null`):

- images and stickers: `width`, `height`, `thumbnail`, `blurhash`, `animated`;
- audio: `duration_ms`, `audio`; voice notes also `waveform`;
- video: `duration_ms`, `video`, and `width`, `height` when known; `thumbnail` and `blurhash`
  (of the first H.264 key frame, turned upright) or else `thumbnail_skipped`;
- documents: none.\
"""


def _digest(label):
    d = hashlib.sha256(label.encode()).digest()
    return d.hex(), base64.b64encode(d).decode()


def _wa_blob_length(n):
    return (n // 16 + 1) * 16 + 10


def _sealed_example(mid, kind, mime, size, key, analysis, sidecar=None):
    plain_hex, plain_b64 = _digest(f"{mid} plaintext")
    enc_hex, enc_b64 = _digest(f"{mid} blob")
    enc_size = _wa_blob_length(size)
    ex = {"id": mid, "kind": kind, "format": "whatsapp", "mime": mime, "size": size,
          "sha256": plain_hex, "enc_size": enc_size, "enc_sha256": enc_hex, "key": key}
    ex.update(analysis)
    if sidecar:
        ex["sidecar"] = sidecar
    ex["created_at"] = "2026-11-24T15:33:06Z"
    ex["expires_at"] = "2026-12-24T15:33:06Z"
    desc = {"format": "whatsapp", "kind": kind, "mime": mime, "key": key,
            "file_sha256": plain_b64, "file_enc_sha256": enc_b64,
            "file_length": size, "blob_length": enc_size}
    if sidecar:
        desc["sidecar"] = sidecar
    desc["metadata"] = analysis
    ex["descriptor"] = desc
    return ex


SEALED_IMAGE_EXAMPLE = _sealed_example(
    "9b1c6a7e0f3d4c2b8a5e1f7d6c3b2a19", "image", "image/jpeg", 48213,
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    {"sniffed": "jpeg", "mime": "image/jpeg", "width": 1600, "height": 1200,
     "thumbnail": "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8U…",
     "blurhash": "LEHV6nWB2yk8pyo0adR*.7kCMdnj", "removed": ["exif", "gps"]},
)
SEALED_VOICE_EXAMPLE = _sealed_example(
    "27e4d0c1b9a84f6e93d2c5b1a0f8e7d6", "voice", "audio/ogg", 23000,
    "IB8eHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=",
    {"sniffed": "ogg-opus", "mime": "audio/ogg", "duration_ms": 7420,
     "waveform": [0, 3, 8, 15, 22, 30, 41, 55, 63, 70, 66, 58, 47, 39, 35, 42,
                  56, 71, 85, 93, 100, 94, 80, 62, 48, 37, 29, 33, 45, 60, 74, 81,
                  77, 69, 54, 40, 31, 26, 35, 49, 63, 72, 68, 57, 44, 36, 28, 21,
                  25, 34, 46, 52, 49, 41, 33, 26, 19, 14, 10, 7, 5, 3, 1, 0],
     "audio": {"codec": "opus", "sample_rate": 48000, "channels": 1}, "removed": []},
    sidecar="q83vASNFZ4mrzQ==",
)

MEDIA_INFO_EXAMPLE = {
    "id": "4f39a752c91a0cf4f2b61c5151ce9280",
    "kind": "document",
    "format": "opaque",
    "size": 1000,
    "sha256": "c0310420ff0961ac6c05b9ed13258fb04ced412e26e3f4dc99035833beac040a",
    "created_at": "2026-11-24T15:33:06Z",
    "expires_at": "2026-12-24T15:33:06Z",
}

UPLOAD_RESULT = {
    "description": "`MediaInfo` for a sealed upload; `SealedMedia` for seal-for-me (`?seal=`).",
    "oneOf": [ref("schemas", "MediaInfo"), ref("schemas", "SealedMedia")],
}
UPLOAD_EXAMPLES = {
    "sealed": {"summary": "Sealed upload: `MediaInfo`", "value": MEDIA_INFO_EXAMPLE},
    "sealForMeImage": {"summary": "Seal-for-me (`?seal=whatsapp`, `X-Media-Kind: image`): "
                                  "`SealedMedia` of a photo whose EXIF and GPS data were removed",
                       "value": SEALED_IMAGE_EXAMPLE},
    "sealForMeVoice": {"summary": "Seal-for-me (`?seal=whatsapp`, `X-Media-Kind: voice`): "
                                  "`SealedMedia` of a voice note",
                       "value": SEALED_VOICE_EXAMPLE},
}


def seal_schemas():
    """Schemas of the seal-for-me answer: `SealedMedia`, `Analysis` and its parts, `Descriptor`."""
    created = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC, whole seconds."}
    sealed_props = {
        "id": {"type": "string", "pattern": "^[0-9a-f]{32}$",
               "description": "Media id (as for any upload: from partner, kind, format and the "
                              "blob's SHA-256)."},
        "kind": ref("schemas", "MediaKind"),
        "format": {"type": "string", "enum": ["whatsapp", "signal"],
                   "description": "The format the plaintext was sealed in: the `seal` parameter."},
        "mime": ANALYSIS_PROPS["mime"] | {
            "description": "MIME type of the sniffed type (WhatsApp `mimetype`, Signal "
                           "`contentType`); never taken from the request."},
        "size": {"type": "integer", "format": "int64", "minimum": 0,
                 "description": "Plaintext length in bytes as sealed, i.e. after metadata removal "
                                "(WhatsApp `fileLength`, Signal `size`)."},
        "sha256": {"type": "string", "pattern": HEX_32,
                   "description": "SHA-256 of the plaintext as sealed, lower-case hex (WhatsApp "
                                  "`fileSha256`, Signal `plaintextHash`)."},
        "enc_size": {"type": "integer", "format": "int64", "minimum": 0,
                     "description": "Length of the stored sealed blob, which downloads return "
                                    "(`MediaInfo.size`)."},
        "enc_sha256": {"type": "string", "pattern": HEX_32,
                       "description": "SHA-256 of the sealed blob, lower-case hex (WhatsApp "
                                      "`fileEncSha256`, Signal `digest`; `MediaInfo.sha256` and "
                                      "the download ETag)."},
        "key": {"type": "string", "pattern": B64_KEY, "contentEncoding": "base64",
                "description": "The media key, standard base64: 32 bytes for `whatsapp` "
                               "(`mediaKey`), 64 bytes for `signal` (AES-256 key || HMAC-SHA256 "
                               "key). Fresh for every upload and returned only here: the service "
                               "does not store or log it, so without it the media cannot be "
                               "opened. Treat the whole answer as secret."},
    }
    sealed_props.update({k: v for k, v in ANALYSIS_PROPS.items() if k != "mime"})
    sealed_props.update({
        "sidecar": {"type": "string", "contentEncoding": "base64",
                    "description": "`whatsapp` video, audio and voice only: the streaming sidecar "
                                   "(`streamingSidecar`, 10 bytes per 64 KiB window of the blob), "
                                   "standard base64."},
        "created_at": created,
        "expires_at": created | {
            "description": "End of retention: `retention.ttl_s` seconds after upload (30 days by "
                           "default); afterwards the media answers 410."},
        "descriptor": ref("schemas", "Descriptor"),
    })
    return {
        "SealedMedia": {
            "type": "object",
            "description": "The answer to a seal-for-me upload: what the gateway puts into its "
                           "end-to-end encrypted message so the recipient can download (with a "
                           "token), verify and open the media. Contains the media key: "
                           "`Cache-Control: no-store`, and the service keeps no copy.\n\n"
                           "`sniffed` through `removed` (all but `sidecar`) are what the media "
                           "pipeline learned about the plaintext (schema `Analysis`), flattened "
                           "into this object. " + ANALYSIS_PRESENCE + "\n\n"
                           "`descriptor` repeats it in the form `interop-media open --descriptor` "
                           "reads (binary fields base64 there, `metadata` = the `Analysis`); a "
                           "Signal video's incremental MAC is only there.",
            "required": ["id", "kind", "format", "mime", "size", "sha256", "enc_size",
                         "enc_sha256", "key", "sniffed", "removed", "created_at", "expires_at",
                         "descriptor"],
            "additionalProperties": False,
            "properties": sealed_props,
            "example": SEALED_IMAGE_EXAMPLE,
        },
        "Analysis": {
            "type": "object",
            "description": "What the seal-for-me media pipeline learned about a plaintext media "
                           "and what it removed from it. Flattened into `SealedMedia`; the "
                           "`metadata` of its `descriptor`.\n\n"
                           + ANALYSIS_PRESENCE,
            "required": ANALYSIS_REQUIRED,
            "additionalProperties": False,
            "properties": ANALYSIS_PROPS,
        },
        "AudioInfo": {
            "type": "object",
            "description": "Audio stream facts (audio and voice).",
            "required": ["codec", "sample_rate", "channels"],
            "additionalProperties": False,
            "properties": {
                "codec": {"type": "string", "description": "e.g. `opus`, `aac`, `mp3`, `amr-nb`, `vorbis`."},
                "sample_rate": {"type": "integer", "format": "int32", "minimum": 0,
                                "description": "Samples per second."},
                "channels": {"type": "integer", "minimum": 0},
            },
        },
        "VideoInfo": {
            "type": "object",
            "description": "Video container facts (MP4, 3GP).",
            "required": ["brand", "video_codec", "audio_codec", "rotation", "fast_start"],
            "additionalProperties": False,
            "properties": {
                "brand": {"type": "string",
                          "description": "Major brand of the `ftyp` box, e.g. `isom`, `mp42`, `3gp4`."},
                "video_codec": {"type": ["string", "null"],
                                "description": "Sample entry of the video track, e.g. `avc1`, "
                                               "`hvc1`; `null` when there is none."},
                "audio_codec": {"type": ["string", "null"],
                                "description": "Sample entry of the first audio track, e.g. "
                                               "`mp4a`; `null` when there is none."},
                "rotation": {"type": "integer", "enum": [0, 90, 180, 270],
                             "description": "Clockwise rotation from the video track's matrix."},
                "fast_start": {"type": "boolean",
                               "description": "Whether `moov` precedes `mdat` (playback can start "
                                              "before the download ends)."},
            },
        },
        "Descriptor": {
            "type": "object",
            "description": "What a recipient needs to verify and open one sealed attachment, in "
                           "the JSON shape `interop-media prepare` prints and `interop-media open "
                           "--descriptor` reads. Binary fields are standard base64 with padding "
                           "(unlike `SealedMedia`, whose digests are hex); `open` also accepts "
                           "URL-safe and unpadded base64, and the aliases `digest` for "
                           "`file_enc_sha256` and `size` for `file_length`. Contains the key: "
                           "treat as secret.\n\n"
                           "For `signal`, `file_enc_sha256` is Signal's `digest`, `file_length` its "
                           "(unpadded) `size`, `file_sha256` its `plaintextHash`, and "
                           "`incremental_mac` / `chunk_size` are set for streamable video.",
            "required": ["format", "kind", "key", "file_sha256", "file_enc_sha256",
                         "file_length", "blob_length"],
            "additionalProperties": False,
            "dependentRequired": {"incremental_mac": ["chunk_size"],
                                  "chunk_size": ["incremental_mac"]},
            "properties": {
                "format": {"type": "string", "enum": ["whatsapp", "signal"]},
                "kind": ref("schemas", "MediaKind"),
                "mime": {"type": "string", "description": "MIME type, when known (seal-for-me: always)."},
                "key": {"type": "string", "pattern": B64_KEY, "contentEncoding": "base64",
                        "description": "The media key: 32 bytes (`whatsapp`) or 64 bytes (`signal`)."},
                "file_sha256": {"type": "string", "pattern": B64_32, "contentEncoding": "base64",
                                "description": "SHA-256 of the plaintext (`fileSha256`, Signal "
                                               "`plaintextHash`)."},
                "file_enc_sha256": {"type": "string", "pattern": B64_32, "contentEncoding": "base64",
                                    "description": "SHA-256 of the blob (`fileEncSha256`, Signal "
                                                   "`digest`)."},
                "file_length": {"type": "integer", "format": "int64", "minimum": 0,
                                "description": "Plaintext length in bytes (`fileLength`, Signal `size`)."},
                "blob_length": {"type": "integer", "format": "int64", "minimum": 0,
                                "description": "Blob length in bytes (what is stored and downloaded)."},
                "sidecar": {"type": "string", "contentEncoding": "base64",
                            "description": "`whatsapp` only: streaming sidecar, 10 bytes per 64 KiB "
                                           "window (video, audio, voice)."},
                "incremental_mac": {"type": "string", "contentEncoding": "base64",
                                    "description": "`signal` only: incremental MAC, concatenated "
                                                   "32-byte HMAC-SHA256 digests (with `chunk_size`)."},
                "chunk_size": {"type": "integer", "format": "int32", "minimum": 1,
                               "description": "`signal` only: chunk size in bytes of `incremental_mac`."},
                "metadata": ref("schemas", "Analysis") | {
                    "description": "Media metadata for the recipient; from seal-for-me, the "
                                   "`Analysis`."},
            },
        },
    }


# ---------------------------------------------------------------- tus 1.0 (/v1/uploads/)

UPLOAD_ID = {
    "name": "uid",
    "in": "path",
    "required": True,
    "description": "Upload id: 32 lower-case hex digits, the last segment of the creation's "
                   "`Location`. Anything else answers 404 `upload-not-found` (after the key, "
                   "`Tus-Resumable` and scope checks).",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "example": "2fd1e3c8b176f2b4ffacfadae25fe2f2",
}

TUS_SECURITY = [{"partnerKey": ["upload"]}]
TUS_R401 = ("The API key is missing or unknown (checked before `Tus-Resumable`).",
            ["unauthenticated"], ["WWW-Authenticate"])
TUS_R403 = ("The API key lacks scope `upload`.", ["forbidden"])
TUS_R404 = ("No such upload for this partner: unknown or malformed id, terminated, discarded "
            "after `digest-mismatch`, swept, or another partner's.", ["upload-not-found"])
TUS_R412 = ("`Tus-Resumable` is missing or not `1.0.0`. `Tus-Version` names the version spoken.",
            ["tus-version-unsupported"], ["Tus-Version"])
TUS_R503 = ("The object store is unavailable; retry later.", ["storage-unavailable"], ["Retry-After"])
TUS_R503_DRAINING = ("The object store is unavailable, or this replica is shutting down; retry "
                     "later (any replica can continue the upload).",
                     ["storage-unavailable", "shutting-down"], ["Retry-After"])


def tus_errors(*entries):
    """Problem answers of a tus operation: every one carries `Tus-Resumable`."""
    out = errors(*entries)
    for r in out.values():
        r["headers"]["Tus-Resumable"] = ref("headers", "Tus-Resumable")
    return out


def tus_hdrs(*names):
    return hdrs("Tus-Resumable", *names)


OFFSET_BODY = {
    "application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}},
}

TUS_CREATE_DESC = """\
tus **creation** and **creation-with-upload**. Declares the whole blob up front, as the headers of
`POST /v1/media` would: `Upload-Length` is its length, and `Upload-Metadata` carries `kind`,
`format` and `sha256` (each base64-encoded, as tus encodes metadata values; the decoded values
are those `X-Media-Kind`, `X-Media-Format` and `X-Media-Sha256` take). Other metadata keys (e.g.
tus-js-client's `filename`) are allowed, kept and echoed by `HEAD`, never interpreted.

Checked in this order, before anything is stored: the API key (401), `Tus-Resumable` (412),
scope `upload` (403), not draining (503 `shutting-down`), `Upload-Length` (400; deferred length
is not supported), `Upload-Metadata` (400), a body's `Content-Type` (415), `Upload-Checksum`
(400), then the length against the kind's limit (413 `too-large`) and the format's length rule
(422 `format-invalid`), exactly as for a single upload.

The answer is **201** with `Location: {server.public_url}/v1/uploads/{uid}` (a relative
reference when `server.public_url` is empty), `Upload-Offset` and `Upload-Expires`.

**Creation-with-upload:** a body (`Content-Type: application/offset+octet-stream`, optional
`Upload-Checksum` over it) is taken as a first `PATCH` at offset 0. If it does not arrive whole
(cut short, stalled, longer than `Upload-Length`, failing its checksum, or the store failing),
the upload still exists: the answer is 201 and `Upload-Offset` says how much of it was kept.
Only a whole blob whose SHA-256 differs from `sha256` is refused (422 `digest-mismatch`; the
upload is discarded). With `Upload-Length: 0` (and `sha256` of the empty blob) the upload is
complete at creation.

When the upload is complete the answer carries `Media-Id`: the media, as `POST /v1/media` would
have stored it (same id, so an identical blob already stored and retained is reused, not stored
again).
"""

TUS_PATCH_DESC = """\
tus core `PATCH` (with the **checksum** extension): appends the body at `Upload-Offset`, which
must equal the upload's offset (`HEAD`). The answer is **204** with the new `Upload-Offset`;
the offset a `HEAD` reports is never ahead of what is durably stored.

Checked in this order: the API key (401), `Tus-Resumable` (412), scope `upload` (403), not
draining (503 `shutting-down`), `Content-Type` (415), `Upload-Offset` (400), `Upload-Checksum`
(400), the upload (404, 410), the offset (409 `upload-offset-mismatch`), a `Content-Length`
beyond `Upload-Length` (413), another request holding the upload (409 `upload-busy`).

- **Interrupted bodies are kept:** when the client goes away, the body stalls longer than
  `server.body_idle_timeout_s` (408) or runs past `Upload-Length` (413), the bytes received
  before are committed. After any error, `HEAD` and resume from the offset it reports.
- **`Upload-Checksum: sha256 <base64>`** covers this request's body: the body is spooled and
  checked before any of it is stored; a mismatch answers 460 `checksum-mismatch` and keeps
  nothing (neither does an interrupted checksummed body).
- **One writer at a time:** a `PATCH` holds the upload (for every replica) while it runs;
  another `PATCH` meanwhile answers 409 `upload-busy`. Of `PATCH`es racing on the same offset
  (on one replica or several) exactly one wins. A `DELETE` does not wait for a running `PATCH`.
- **Completion:** the `PATCH` that brings the offset to `Upload-Length` verifies the SHA-256 of
  the whole blob against `sha256`. On a match the media is stored and the answer carries
  `Media-Id`; on a mismatch the answer is 422 `digest-mismatch`, the upload is discarded (404
  from then on) and nothing becomes visible. A repeated final `PATCH` (`Upload-Offset` equal to
  `Upload-Length`, empty body; e.g. after a lost answer) answers 204 with the same `Media-Id`;
  any other `PATCH` to a complete upload answers 409 `upload-offset-mismatch`.
- A `PATCH` with an empty body before completion changes nothing (204).
"""


def tus_paths():
    coll = {
        "options": {
            "tags": ["tus"],
            "operationId": "tusOptions",
            "summary": "What this tus server supports",
            "description": "tus discovery. Needs no API key and no `Tus-Resumable` (tus clients "
                           "ask before authenticating). Also served at `/v1/uploads` (no slash).",
            "security": [],
            "parameters": [ref("parameters", "X-Request-Id")],
            "responses": {
                "204": {
                    "description": "The protocol version, extensions, largest upload and checksum "
                                   "algorithms.",
                    "headers": tus_hdrs("Tus-Version", "Tus-Extension", "Tus-Max-Size",
                                        "Tus-Checksum-Algorithm"),
                },
            },
        },
        "post": {
            "tags": ["tus"],
            "operationId": "tusCreate",
            "summary": "Create a resumable upload (optionally with its first bytes)",
            "description": TUS_CREATE_DESC,
            "security": TUS_SECURITY,
            "parameters": [
                ref("parameters", "Tus-Resumable"),
                {
                    "name": "Upload-Length",
                    "in": "header",
                    "required": True,
                    "description": "Length of the whole blob in bytes. Missing: 400 `missing-header`; "
                                   "not a number: 400 `invalid-field`; `Upload-Defer-Length` "
                                   "instead: 400 `invalid-field` (not supported); above the kind's "
                                   "limit: 413; impossible for the format: 422 `format-invalid`.",
                    "schema": {"type": "integer", "format": "int64", "minimum": 0},
                    "example": 5242883,
                },
                {
                    "name": "Upload-Metadata",
                    "in": "header",
                    "required": True,
                    "description": "Comma-separated `key base64value` pairs (at most 4096 bytes, unique "
                                   "keys of printable ASCII without spaces or commas). Required keys: "
                                   "`kind` (a `MediaKind`), `format` (a `MediaFormat`) and `sha256` "
                                   "(the blob's SHA-256 as 64 hex digits or base64, as for "
                                   "`X-Media-Sha256`), each value base64-encoded. Malformed or "
                                   "lacking a key: 400 `malformed-metadata`; a bad value: 400 "
                                   "`unknown-kind`, `unknown-format` or `malformed-digest`. Echoed "
                                   "as sent by `HEAD`.",
                    "schema": {"type": "string", "maxLength": 4096},
                    "example": "kind dmlkZW8=,format b3BhcXVl,sha256 "
                               "YzAzMTA0MjBmZjA5NjFhYzZjMDViOWVkMTMyNThmYjA0Y2VkNDEyZTI2ZTNmNGRjOTkwMzU4MzNiZWFjMDQwYQ==,"
                               "filename Y2xpcC5tcDQuZW5j",
                },
                ref("parameters", "Upload-Checksum"),
                {
                    "name": "Content-Length",
                    "in": "header",
                    "required": False,
                    "description": "Length of the optional body (creation-with-upload). Absent or 0 "
                                   "without `Transfer-Encoding`: no body, plain creation.",
                    "schema": {"type": "integer", "format": "int64", "minimum": 0},
                },
                ref("parameters", "X-Request-Id"),
            ],
            "requestBody": {
                "required": False,
                "description": "Creation-with-upload: the first bytes of the blob (all of it, or "
                               "a prefix). Any other `Content-Type` answers 415.",
                "content": OFFSET_BODY,
            },
            "responses": {
                "201": {
                    "description": "Created. `Upload-Offset` is how much of a creation-with-upload "
                                   "body was kept (0 without a body); `Media-Id` is present when "
                                   "the upload is already complete.",
                    "headers": tus_hdrs("Location-Upload", "Upload-Offset", "Upload-Expires",
                                        "Cache-Control-No-Store", "Media-Id"),
                },
                **tus_errors(
                    ("A header is missing or malformed: `Upload-Length` (`missing-header`, or "
                     "`invalid-field`; also for `Upload-Defer-Length`), `Upload-Metadata` "
                     "(`malformed-metadata`, `unknown-kind`, `unknown-format`, `malformed-digest`, "
                     "or `invalid-field` when not visible ASCII), `Upload-Checksum` "
                     "(`checksum-algorithm-unsupported`, or `invalid-field`), `Content-Length` "
                     "(`invalid-field`).",
                     ["missing-header", "invalid-field", "malformed-metadata", "unknown-kind",
                      "unknown-format", "malformed-digest", "checksum-algorithm-unsupported"],
                     ["Connection"], None, "missing header upload-length"),
                    TUS_R401,
                    TUS_R403,
                    TUS_R412,
                    ("`Upload-Length` exceeds the kind's limit.", ["too-large"]),
                    ("A body was sent with a `Content-Type` other than "
                     "`application/offset+octet-stream`.", ["unsupported-content-type"], ["Connection"]),
                    ("`Upload-Length` is impossible for the format (`format-invalid`), or a "
                     "creation-with-upload body was the whole blob and its SHA-256 differs from "
                     "`sha256` (`digest-mismatch`; the upload is discarded). Nothing was stored.",
                     ["format-invalid", "digest-mismatch"]),
                    R500,
                    TUS_R503_DRAINING,
                ),
            },
        },
    }
    head_responses = {
        "200": {
            "description": "The upload's durable offset. `Upload-Metadata` is present when it "
                           "was sent at creation; `Media-Id` once the upload is complete (then "
                           "`Upload-Offset` equals `Upload-Length`).",
            "headers": tus_hdrs("Upload-Offset", "Upload-Length", "Upload-Metadata",
                                "Upload-Expires", "Cache-Control-No-Store", "Media-Id"),
        },
        **tus_errors(
            TUS_R401,
            TUS_R403,
            TUS_R404,
            ("The unfinished upload is past `Upload-Expires`.", ["upload-expired"]),
            TUS_R412,
            R500,
            TUS_R503,
        ),
    }
    no_problem_bodies(head_responses)
    item = {
        "parameters": [UPLOAD_ID],
        "head": {
            "tags": ["tus"],
            "operationId": "tusHead",
            "summary": "Where an upload stands",
            "description": "tus core `HEAD`: the offset to resume from, never ahead of durable "
                           "data (any replica answers the same). A complete upload answers with "
                           "its `Media-Id` (until it is swept after `Upload-Expires`); an "
                           "unfinished one past `Upload-Expires` answers 410. No answer is "
                           "cacheable (`Cache-Control: no-store`).",
            "security": TUS_SECURITY,
            "parameters": [ref("parameters", "Tus-Resumable"), ref("parameters", "X-Request-Id")],
            "responses": head_responses,
        },
        "patch": {
            "tags": ["tus"],
            "operationId": "tusPatch",
            "summary": "Append bytes at the upload's offset",
            "description": TUS_PATCH_DESC,
            "security": TUS_SECURITY,
            "parameters": [
                ref("parameters", "Tus-Resumable"),
                {
                    "name": "Upload-Offset",
                    "in": "header",
                    "required": True,
                    "description": "Where this body starts; must equal the upload's offset. "
                                   "Missing: 400 `missing-header`; not a number: 400 "
                                   "`invalid-field`; another offset: 409 `upload-offset-mismatch`.",
                    "schema": {"type": "integer", "format": "int64", "minimum": 0},
                },
                ref("parameters", "Upload-Checksum"),
                {
                    "name": "Content-Length",
                    "in": "header",
                    "required": False,
                    "description": "Length of this body; more than the rest of `Upload-Length` "
                                   "answers 413 before the body is read. Without it, use "
                                   "`Transfer-Encoding: chunked`.",
                    "schema": {"type": "integer", "format": "int64", "minimum": 0},
                },
                ref("parameters", "X-Request-Id"),
            ],
            "requestBody": {
                "required": True,
                "description": "The next bytes of the blob (any amount up to the rest of "
                               "`Upload-Length`). Any other `Content-Type` answers 415.",
                "content": OFFSET_BODY,
            },
            "responses": {
                "204": {
                    "description": "Stored. `Upload-Offset` is the new offset; `Media-Id` is present "
                                   "when the upload is complete.",
                    "headers": tus_hdrs("Upload-Offset", "Upload-Expires", "Cache-Control-No-Store",
                                        "Media-Id"),
                },
                **tus_errors(
                    ("A header is missing or malformed (`Upload-Offset`: `missing-header` or "
                     "`invalid-field`; `Upload-Checksum`: `checksum-algorithm-unsupported` or "
                     "`invalid-field`; `Content-Length`: `invalid-field`), or the body could not "
                     "be read (`body-aborted`; what arrived before is kept).",
                     ["missing-header", "invalid-field", "checksum-algorithm-unsupported",
                      "body-aborted"],
                     ["Connection"], None, "missing header upload-offset"),
                    TUS_R401,
                    TUS_R403,
                    TUS_R404,
                    ("The body stalled longer than the idle timeout (`body-timeout`) or arrived "
                     "slower than the minimum upload rate (`body-too-slow`); what arrived before "
                     "is kept (none of it with `Upload-Checksum`).",
                     ["body-timeout", "body-too-slow"], ["Connection"]),
                    ("`Upload-Offset` is not the upload's offset (or the upload is complete), or "
                     "another request holds the upload. `HEAD`, then resume.",
                     ["upload-offset-mismatch", "upload-busy"]),
                    ("The unfinished upload is past `Upload-Expires`.", ["upload-expired"]),
                    TUS_R412,
                    ("The body goes past `Upload-Length`: refused before reading when "
                     "`Content-Length` says so, else once it does (what arrived before is kept, "
                     "unless `Upload-Checksum` was sent).", ["too-large"], None, None,
                     "20 bytes exceed the upload limit of 11 bytes"),
                    ("`Content-Type` is not `application/offset+octet-stream`.",
                     ["unsupported-content-type"], ["Connection"]),
                    ("The whole blob's SHA-256 differs from `sha256`: the upload is discarded "
                     "(404 from then on) and nothing was stored.", ["digest-mismatch"]),
                    ("The body does not match `Upload-Checksum`; nothing of it was kept "
                     "(tus status 460, no reason phrase on the status line).", ["checksum-mismatch"]),
                    ("The caller's uploads hold all of its share of upload memory; the body was "
                     "not read; the connection is closed. Retry later.", ["partner-upload-limit"],
                     ["Retry-After", "Connection"]),
                    R500,
                    ("The object store is unavailable, this replica is shutting down, or the "
                     "service's upload memory is full (`uploads-busy`, the body was not read); "
                     "retry later (any replica can continue the upload).",
                     ["storage-unavailable", "shutting-down", "uploads-busy"], ["Retry-After"]),
                ),
            },
        },
        "delete": {
            "tags": ["tus"],
            "operationId": "tusTerminate",
            "summary": "Terminate an upload",
            "description": "tus **termination**: the upload is gone at once (404 from then on, on "
                           "every replica; a `PATCH` still running cannot commit) and its stored "
                           "parts are removed. Also allowed for expired uploads. Terminating a "
                           "complete upload forgets the upload, not the media: use "
                           "`DELETE /v1/media/{id}` for that.",
            "security": TUS_SECURITY,
            "parameters": [ref("parameters", "Tus-Resumable"), ref("parameters", "X-Request-Id")],
            "responses": {
                "204": {"description": "Terminated.", "headers": tus_hdrs()},
                **tus_errors(
                    TUS_R401,
                    TUS_R403,
                    TUS_R404,
                    ("`PATCH`es kept changing the upload while it was being terminated; retry.",
                     ["upload-busy"]),
                    TUS_R412,
                    R500,
                    TUS_R503,
                ),
            },
        },
    }
    return {"/v1/uploads/": coll, "/v1/uploads/{uid}": item}


AUDIENCE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 32,
    "pattern": "^[A-Za-z0-9._:-]{1,32}$",
    "description": "Who the token is for (e.g. the receiving partner app or proxy); bound into "
                   "the token. Otherwise 400 `invalid-field`.",
}

TOKEN_FIELDS = {
    "token": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 200},
    "url": {"type": "string", "format": "uri",
            "description": "Absolute download URL: `{base}/v1/download/{token}`."},
    "expires_at": {"type": "string", "format": "date-time",
                   "description": "RFC 3339, UTC, whole seconds."},
}


def router_responses():
    """Answers of the router itself, for any path or method not in `paths`."""
    _, not_found = problem("Unknown path (any method).", ["not-found"])
    _, not_allowed = problem("The path exists but does not serve this method. `Allow` lists the "
                             "methods it serves.", ["method-not-allowed"], ["Allow"])
    out = {"NotFound": not_found, "MethodNotAllowed": not_allowed}
    # Refusals made below the handlers (routing, extractors, payload handling): any operation
    # may answer them, always as a problem document.
    for name, code in [("MalformedRequest", "malformed-request"),
                       ("RequestTimeout", "request-timeout"),
                       ("LengthRequired", "length-required"),
                       ("UriTooLong", "uri-too-long"),
                       ("HeadersTooLarge", "headers-too-large")]:
        _, out[name] = problem("The framework refused the request before the API's own checks.",
                               [code])
    return out


def build():
    paths = {}
    paths["/v1/media"] = {
        "post": {
            "tags": ["gateway"],
            "operationId": "uploadMedia",
            "summary": "Upload a sealed (end-to-end encrypted) attachment, or plaintext to seal (`?seal=`)",
            "description": UPLOAD_DESC,
            # Alternatives: scope `upload` for a sealed upload, scope `seal` with `?seal=`.
            "security": [{"partnerKey": ["upload"]}, {"partnerKey": ["seal"]}],
            "parameters": [
                {
                    "name": "seal",
                    "in": "query",
                    "required": False,
                    "description": "Present: a **seal-for-me** upload (scope `seal`): the body is "
                                   "plaintext, which the service seals in this E2EE attachment "
                                   "format under a fresh key; the answer is a `SealedMedia`. "
                                   "Absent: a sealed upload (scope `upload`). Any value answers 403 "
                                   "`forbidden` without scope `seal`; with it, a value outside the "
                                   "enum answers 400 `invalid-field`. Given twice: 400 "
                                   "`invalid-field` (field `query`).",
                    "schema": {"type": "string", "enum": ["whatsapp", "signal"]},
                },
                {
                    "name": "X-Media-Kind",
                    "in": "header",
                    "required": True,
                    "description": "What the attachment is; selects the size limit (and, for "
                                   "seal-for-me, the allowed types and what is learned from the "
                                   "media). Missing or not visible ASCII: 400 `missing-header`; "
                                   "another value: 400 `unknown-kind`.",
                    "schema": ref("schemas", "MediaKind"),
                },
                {
                    "name": "X-Media-Format",
                    "in": "header",
                    "required": False,
                    "description": "The E2EE attachment format the blob is in; selects the structure "
                                   "check. **Required for a sealed upload** (400 `missing-header`, "
                                   "`unknown-format`); ignored with `?seal=` (the format is `seal`).",
                    "schema": ref("schemas", "MediaFormat"),
                },
                {
                    "name": "X-Media-Sha256",
                    "in": "header",
                    "required": False,
                    "description": "SHA-256 of the blob as sent (WhatsApp's `fileEncSha256`, Signal's "
                                   "`digest`): 64 hex digits (either case), or 43 base64 characters "
                                   "(standard or URL-safe alphabet) with optional `=` padding. "
                                   "**Required for a sealed upload** (400 `missing-header`, "
                                   "`malformed-digest`); ignored with `?seal=` (the service computes "
                                   "the digests and returns them).",
                    "schema": {
                        "type": "string",
                        "pattern": "^(?:[0-9A-Fa-f]{64}|[A-Za-z0-9+/]{43}=?|[A-Za-z0-9_-]{43}=?)$",
                    },
                    "example": "c0310420ff0961ac6c05b9ed13258fb04ced412e26e3f4dc99035833beac040a",
                },
                {
                    "name": "Content-Length",
                    "in": "header",
                    "required": False,
                    "description": "Length of the body (the blob; with `?seal=`, the plaintext). Send "
                                   "it when known: it lets the service refuse an oversized or "
                                   "malformed upload (413/422; with `?seal=`, 413) before the body "
                                   "is sent. Without it, use `Transfer-Encoding: chunked`.",
                    "schema": {"type": "integer", "format": "int64", "minimum": 0},
                },
                ref("parameters", "X-Request-Id"),
            ],
            "requestBody": {
                "required": True,
                "description": "Sealed upload: the sealed blob, byte for byte as the recipient will "
                               "download it. Seal-for-me (`?seal=`): the **plaintext** file (its type "
                               "is sniffed from its bytes; `Content-Type` is not checked in either "
                               "mode).",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            },
            "responses": {
                "201": {
                    "description": "Stored: a new media. Sealed upload: its `MediaInfo`. "
                                   "Seal-for-me: a `SealedMedia` (the media plus the key and what "
                                   "the recipient needs to open it), with `Cache-Control: no-store`.",
                    "headers": hdrs("Location", "Cache-Control-Sealed"),
                    "content": {"application/json": {"schema": UPLOAD_RESULT, "examples": UPLOAD_EXAMPLES}},
                },
                "200": {
                    "description": "The same blob (same partner, kind, format and SHA-256) is already "
                                   "stored and retained: the existing media, nothing stored again. "
                                   "Sealed upload: its `MediaInfo`, without `Location`. Seal-for-me "
                                   "(practically never: a fresh key makes a fresh blob): a "
                                   "`SealedMedia` with `Location` and `Cache-Control: no-store`, as "
                                   "for 201.",
                    "headers": hdrs("Location", "Cache-Control-Sealed"),
                    "content": {"application/json": {"schema": UPLOAD_RESULT}},
                },
                **errors(
                    ("A request header is missing or malformed (with `?seal=` only `X-Media-Kind` "
                     "and `Content-Length` are read), the query string is malformed "
                     "(for example `seal` given twice: `invalid-field`, field `query`) or `seal` is "
                     "not `whatsapp` or `signal` (`invalid-field`, field `seal`), or the body did "
                     "not match `Content-Length` or could not be read (these two carry "
                     "`Connection: close`).",
                     ["missing-header", "unknown-kind", "unknown-format", "malformed-digest",
                      "invalid-field", "length-mismatch", "body-aborted"],
                     ["Connection"]),
                    R401,
                    ("The API key lacks scope `upload` (or `seal` when `?seal` is given).", ["forbidden"]),
                    ("The body stalled longer than the idle timeout (`body-timeout`) or arrived "
                     "slower than the minimum upload rate (`body-too-slow`); nothing was stored.",
                     ["body-timeout", "body-too-slow"], ["Connection"]),
                    ("The declared or received length exceeds the kind's limit (sealed upload: "
                     "`limits.sealed.*`; seal-for-me: the plaintext limit `limits.seal.*`).",
                     ["too-large"], ["Connection"]),
                    ("Seal-for-me: the type sniffed from the body is not allowed for `X-Media-Kind` "
                     "(the detail names it); nothing was stored.", ["media-type-not-allowed"]),
                    ("Nothing was stored. Sealed upload: the blob does not match its declared "
                     "digest (`digest-mismatch`) or format (`format-invalid`). Seal-for-me: the "
                     "media exceeds the pixel or duration limits (`media-limits-exceeded`), or "
                     "could not be decoded: corrupt, truncated or hostile input, or a worker that "
                     "crashed, ran out of memory or time (`media-undecodable`).",
                     ["digest-mismatch", "format-invalid", "media-limits-exceeded",
                      "media-undecodable"]),
                    R500,
                    ("Seal-for-me is turned off in this deployment (`media.workers = 0`). "
                     "Answered after the scope, `seal`, `X-Media-Kind` and `Content-Length` checks, "
                     "before the body is read.", ["not-implemented"]),
                    ("The caller's uploads hold all of its share of upload memory; the body was "
                     "not read; the connection is closed. Retry later.", ["partner-upload-limit"],
                     ["Retry-After", "Connection"]),
                    ("The object store is unavailable, this replica is shutting down, the "
                     "service's upload memory is full (`uploads-busy`, the body was not read), or "
                     "(seal-for-me) every media worker is busy; retry later.",
                     ["storage-unavailable", "shutting-down", "uploads-busy", "media-busy"],
                     ["Retry-After"]),
                ),
            },
        }
    }
    paths["/v1/media/{id}"] = {
        "parameters": [MEDIA_ID],
        "get": {
            "tags": ["gateway"],
            "operationId": "getMedia",
            "summary": "Metadata of one of the caller's media",
            "description": "Any valid partner API key may read its own media's metadata (no scope is "
                           "required). Another partner's media answers 404, never 403.",
            "security": [{"partnerKey": []}],
            "parameters": [ref("parameters", "X-Request-Id")],
            "responses": {
                "200": {
                    "description": "The media.",
                    "headers": hdrs(),
                    "content": {"application/json": {"schema": ref("schemas", "MediaInfo")}},
                },
                **errors(R401, R404, R410, R500, R503),
            },
        },
        "delete": {
            "tags": ["gateway"],
            "operationId": "deleteMedia",
            "summary": "Delete one of the caller's media",
            "description": "Requires scope `delete`. Expired (not yet swept) media can be deleted too. "
                           "Tokens minted for the media stop working at once, even if the same "
                           "content is uploaded again later.",
            "security": [{"partnerKey": ["delete"]}],
            "parameters": [ref("parameters", "X-Request-Id")],
            "responses": {
                "204": {"description": "Deleted.", "headers": hdrs()},
                **errors(
                    R401,
                    ("The API key lacks scope `delete`.", ["forbidden"], None, None,
                     "this API key lacks the `delete` scope"),
                    R404, R500, R503,
                ),
            },
        },
    }
    paths["/v1/media/{id}/tokens"] = {
        "parameters": [MEDIA_ID],
        "post": {
            "tags": ["gateway"],
            "operationId": "mintToken",
            "summary": "Mint short-lived download tokens, for one audience or many",
            "description": (
                "Requires scope `token`. A token is a stateless capability for `GET`/`HEAD "
                "/v1/download/{token}` of this media, bound to the media's current generation, "
                "the partner and the audience. It is signed, not encrypted: its holder can read "
                "the partner id and audience inside it.\n\n"
                "**One audience** (`{\"audience\": …}`) answers `MintResponse`. **Fan-out** "
                "(`{\"audiences\": […]}`, e.g. the providers of a group's members) answers "
                "`FanoutResponse`: one token per audience, in request order, all with the same "
                "expiry. A fan-out request is all or nothing: at most `tokens.max_audiences` "
                "audiences (256 by default; more answers 400 `too-many-audiences`), none twice "
                "(400 `duplicate-audience`), none empty or outside `[A-Za-z0-9._:-]{1,32}` and not "
                "an empty list (400 `invalid-field`); every audience is checked before any token "
                "is minted. Naming both `audience` and `audiences`, or neither, is 400 "
                "`invalid-field`. Each minted token is an audit log event (target `audit`: "
                "partner, media id, audience, outcome; never the token).\n\n"
                "Lifetime: `ttl_s` if given, else `tokens.default_ttl_s` (300 by default); in "
                "both cases capped, not refused, at the partner's `max_token_ttl_s` (default "
                "`tokens.max_ttl_s`, 3600), and never beyond the media's own expiry. Verification "
                "allows `tokens.clock_skew_s` (30 s) of skew past `expires_at`.\n\n"
                "`url` is `server.public_url` (or, when unset, the scheme and host this request "
                "arrived with) followed by `/v1/download/{token}`.\n\n"
                "The JSON body (at most 65536 bytes on this route) is parsed before the scope is "
                "checked, so a malformed body answers 400, and an oversized one 413, even for a key "
                "without scope `token`."
            ),
            "security": [{"partnerKey": ["token"]}],
            "parameters": [ref("parameters", "X-Request-Id")],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("schemas", "MintRequest")}},
            },
            "responses": {
                "201": {
                    "description": "Minted: `MintResponse` for `audience`, `FanoutResponse` for "
                                   "`audiences`.",
                    "headers": hdrs(),
                    "content": {"application/json": {"schema": {"oneOf": [
                        ref("schemas", "MintResponse"), ref("schemas", "FanoutResponse")]}}},
                },
                **errors(
                    ("The body is not valid JSON for `MintRequest` (wrong `Content-Type`, unknown "
                     "field, wrong type), `audience`/`audiences`/`ttl_s` is out of range, more "
                     "audiences than `tokens.max_audiences`, or an audience named twice.",
                     ["malformed-json", "invalid-field", "too-many-audiences",
                      "duplicate-audience"]),
                    ("The JSON body exceeds 65536 bytes.", ["too-large"], ["Connection"], None,
                     "65537 bytes exceed the json limit of 65536 bytes"),
                    R401,
                    ("The API key lacks scope `token`.", ["forbidden"], None, None,
                     "this API key lacks the `token` scope"),
                    R404, R410, R500, R503,
                ),
            },
        },
    }
    paths["/v1/download/{token}"] = {
        "parameters": [],
        "get": download_op("get"),
        "head": download_op("head"),
    }
    # Path-level parameters are redundant here (the token is per operation); drop the empty list.
    del paths["/v1/download/{token}"]["parameters"]
    paths.update(tus_paths())

    paths["/healthz"] = {
        "get": {
            "tags": ["ops"],
            "operationId": "healthz",
            "summary": "Liveness",
            "description": "200 as long as the process serves HTTP. Checks nothing else.",
            "security": [],
            "responses": {"200": text_ok("Alive.", "ok\n")},
        }
    }
    paths["/readyz"] = {
        "get": {
            "tags": ["ops"],
            "operationId": "readyz",
            "summary": "Readiness",
            "description": "200 when this replica should receive traffic: not draining after "
                           "SIGTERM, and the object store answers. (Keys are checked at start-up: "
                           "a replica whose keys failed to load never listens.) Plain text, not a "
                           "problem document, and no `Retry-After`.\n\n"
                           "On SIGTERM readiness answers 503 `draining` at once, while the replica "
                           "keeps serving for `server.drain_delay_s` (default 0) so load balancers "
                           "stop routing to it; uploads arriving meanwhile answer 503 "
                           "`shutting-down`, other requests are served as usual. Then it stops "
                           "accepting connections and gives in-flight requests up to "
                           "`server.shutdown_grace_s` (default 30) to finish; unfinished uploads "
                           "are aborted.",
            "security": [],
            "responses": {
                "200": text_ok("Ready.", "ready\n"),
                "503": {
                    "description": "Not ready: `draining` (shutting down) or `store unreachable`.",
                    "headers": hdrs(),
                    "content": {"text/plain": {"schema": {"type": "string",
                                                          "enum": ["draining\n", "store unreachable\n"]}}},
                },
            },
        }
    }
    paths["/metrics"] = {
        "get": {
            "tags": ["ops"],
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "description": "Prometheus text exposition format. Not public by default: served only "
                           "on `server.metrics_listen` (a listener that serves nothing else; empty, "
                           "the default, means no metrics listener), and the main listener answers "
                           "404 `not-found` for it. Exception for development: `serve --dev` on a "
                           "loopback address also serves it on the main listener.",
            "security": [],
            "responses": {"200": text_ok("Metrics.", "# HELP …\n", "text/plain; version=0.0.4")},
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "tags": ["ops"],
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 description of this API.",
                    "headers": hdrs(),
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }

    code_table = "\n".join(f"| `{c}` | {s} | {m} |" for c, s, m in CODES)
    schemas = {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details, served as `application/problem+json` for every "
                           "error the service itself produces. `code` is stable and machine-readable: "
                           "clients branch on it, never on `title` or `detail`, which may change.\n\n"
                           "| code | status | meaning |\n|---|---|---|\n" + code_table,
            "required": ["type", "title", "status", "code"],
            "properties": {
                "type": {
                    "type": "string",
                    "format": "uri",
                    "description": "`https://interop-media.dev/problems/{code}`.",
                    "example": "https://interop-media.dev/problems/media-not-found",
                },
                "title": {"type": "string", "description": "The HTTP reason phrase of `status`.",
                          "example": "Not Found"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599, "example": 404},
                "code": {"type": "string", "enum": [c for c, _, _ in CODES],
                         "description": "Stable machine-readable error code (see the table above)."},
                "detail": {
                    "type": "string",
                    "description": "Human-readable explanation for 4xx answers. **Absent on every "
                                   "5xx answer**: server errors never carry internal detail.",
                    "example": "no such media",
                },
            },
        },
        "MediaKind": {
            "type": "string",
            "enum": ["image", "sticker", "voice", "audio", "video", "document"],
        },
        "MediaFormat": {
            "type": "string",
            "enum": ["whatsapp", "signal", "opaque"],
            "description": "`whatsapp`: AES-256-CBC(enc) || HMAC-SHA256[..10]. `signal`: IV(16) || "
                           "AES-256-CBC || HMAC-SHA256(32). `opaque`: no structure known to the service.",
        },
        "MediaInfo": {
            "type": "object",
            "description": "A stored media as the owning gateway sees it.",
            "required": ["id", "kind", "format", "size", "sha256", "created_at", "expires_at"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9a-f]{32}$",
                       "description": "Media id, derived from partner, kind, format and SHA-256."},
                "kind": ref("schemas", "MediaKind"),
                "format": ref("schemas", "MediaFormat"),
                "size": {"type": "integer", "format": "int64", "minimum": 0,
                         "description": "Length of the blob in bytes (as uploaded and as downloaded)."},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                           "description": "SHA-256 of the blob, lower-case hex (also the download ETag)."},
                "created_at": {"type": "string", "format": "date-time",
                               "description": "RFC 3339, UTC, whole seconds."},
                "expires_at": {"type": "string", "format": "date-time",
                               "description": "End of retention: `retention.ttl_s` seconds after upload (2592000, "
                                              "30 days, by default); afterwards the media answers 410."},
            },
            "example": MEDIA_INFO_EXAMPLE,
        },
        **seal_schemas(),
        "MintRequest": {
            "type": "object",
            "description": "Exactly one of `audience` (one token) and `audiences` (fan-out).",
            "oneOf": [{"required": ["audience"]}, {"required": ["audiences"]}],
            "additionalProperties": False,
            "properties": {
                "audience": AUDIENCE,
                "audiences": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 256,
                    "uniqueItems": True,
                    "items": AUDIENCE,
                    "description": "Fan-out: one token per entry, in this order. At most "
                                   "`tokens.max_audiences` (256 by default; 400 "
                                   "`too-many-audiences`), no duplicates (400 "
                                   "`duplicate-audience`), not empty (400 `invalid-field`).",
                },
                "ttl_s": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 1,
                    "description": "Requested lifetime in seconds. 0 answers 400 `invalid-field`; values "
                                   "above the partner's maximum are capped, not refused. Default "
                                   "`tokens.default_ttl_s`.",
                },
            },
            "example": {"audience": "birdychat:app", "ttl_s": 300},
        },
        "MintResponse": {
            "type": "object",
            "required": ["token", "url", "expires_at"],
            "additionalProperties": False,
            "properties": TOKEN_FIELDS,
        },
        "FanoutResponse": {
            "type": "object",
            "required": ["tokens"],
            "additionalProperties": False,
            "properties": {
                "tokens": {
                    "type": "array",
                    "description": "One entry per requested audience, in request order.",
                    "items": {
                        "type": "object",
                        "required": ["audience", "token", "url", "expires_at"],
                        "additionalProperties": False,
                        "properties": {"audience": AUDIENCE} | TOKEN_FIELDS,
                    },
                },
            },
            "example": {"tokens": [
                {"audience": "birdychat:app", "token": "AQECdDE…", "url":
                 "https://media.example/v1/download/AQECdDE…", "expires_at": "2026-11-30T01:05:00Z"},
                {"audience": "haiket-proxy", "token": "AQECdDF…", "url":
                 "https://media.example/v1/download/AQECdDF…", "expires_at": "2026-11-30T01:05:00Z"},
            ]},
        },
    }

    headers = {
        "X-Request-Id": {
            "description": "The request id used in the service's logs: the caller's `X-Request-Id` "
                           "if it was 1-64 characters of `[A-Za-z0-9-]`, else a fresh one. Sent on "
                           "every answer.",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"},
        },
        "Retry-After": {
            "description": "Seconds to wait before retrying (always `5` today). Sent with every 503 "
                           "problem (`storage-unavailable`, `shutting-down`, `media-busy`).",
            "schema": {"type": "integer", "minimum": 0, "example": 5},
        },
        "WWW-Authenticate": {
            "description": "`Bearer`, on 401 `unauthenticated`.",
            "schema": {"type": "string", "const": "Bearer"},
        },
        "Connection": {
            "description": "`close` when part of the request body was left unread "
                           "(`length-mismatch`, `body-aborted`, `body-timeout`, `too-large` before the "
                           "body, oversized JSON; on `/v1/uploads`, any error answered before a "
                           "body was read, e.g. `unsupported-content-type`).",
            "schema": {"type": "string", "example": "close"},
        },
        "ETag": {
            "description": "Strong validator: the quoted lower-case hex SHA-256 of the blob.",
            "schema": {"type": "string", "pattern": "^\"[0-9a-f]{64}\"$"},
        },
        "Cache-Control": {"description": "Always `private`.", "schema": {"type": "string", "const": "private"}},
        "Cache-Control-Problem": {"description": "Always `no-store`, on every problem answer.",
                                  "schema": {"type": "string", "const": "no-store"}},
        "Location": {"description": "`/v1/media/{id}`: the new media (relative reference); on a "
                                    "seal-for-me 200, the existing one.",
                     "schema": {"type": "string", "pattern": "^/v1/media/[0-9a-f]{32}$"}},
        "Allow": {"description": "The methods the path serves, e.g. `POST` or `GET, DELETE`.",
                  "schema": {"type": "string"}, "example": "GET, DELETE"},
        "X-Content-Type-Options": {"description": "Always `nosniff` (on downloads and on every problem answer).",
                                   "schema": {"type": "string", "const": "nosniff"}},
        "Accept-Ranges": {"description": "Always `bytes`.", "schema": {"type": "string", "const": "bytes"}},
        "Content-Length": {"description": "Bytes in the (GET) body.",
                           "schema": {"type": "integer", "format": "int64", "minimum": 0}},
        "Content-Type-Problem": {"description": "`application/problem+json` (the body GET would carry).",
                                 "schema": {"type": "string", "const": "application/problem+json"}},
        "Content-Type-Octet": {"description": "Always `application/octet-stream`.",
                               "schema": {"type": "string", "const": "application/octet-stream"}},
        "Content-Range": {"description": "`bytes {first}-{last}/{size}`.",
                          "schema": {"type": "string", "pattern": "^bytes [0-9]+-[0-9]+/[0-9]+$"}},
        "Content-Range-Unsatisfied": {"description": "`bytes */{size}`: the blob's length.",
                                      "schema": {"type": "string", "pattern": "^bytes \\*/[0-9]+$"}},
        "Tus-Resumable": {"description": "Always `1.0.0`: on every answer under `/v1/uploads`, "
                                         "problems and 405 included.",
                          "schema": {"type": "string", "const": "1.0.0"}},
        "Tus-Version": {"description": "The tus versions spoken: `1.0.0` only (also on 412 "
                                       "`tus-version-unsupported`).",
                        "schema": {"type": "string", "const": "1.0.0"}},
        "Tus-Extension": {"description": "The tus extensions supported. Not supported: "
                                         "`creation-defer-length`, `concatenation`.",
                          "schema": {"type": "string",
                                     "const": "creation,creation-with-upload,expiration,checksum,termination"}},
        "Tus-Max-Size": {"description": "The largest `Upload-Length` of any kind (the largest "
                                        "`limits.sealed.*`, 2362232012 by default); each kind's own "
                                        "limit applies at creation (413).",
                         "schema": {"type": "integer", "format": "int64", "minimum": 0},
                         "example": 2362232012},
        "Tus-Checksum-Algorithm": {"description": "`Upload-Checksum` algorithms: `sha256` only.",
                                   "schema": {"type": "string", "const": "sha256"}},
        "Upload-Offset": {"description": "Bytes of the blob durably received so far (equal to "
                                         "`Upload-Length` once complete).",
                          "schema": {"type": "integer", "format": "int64", "minimum": 0}},
        "Upload-Length": {"description": "The blob's length as declared at creation.",
                          "schema": {"type": "integer", "format": "int64", "minimum": 0}},
        "Upload-Metadata": {"description": "`Upload-Metadata` exactly as sent at creation; absent "
                                           "when it was empty.",
                            "schema": {"type": "string", "maxLength": 4096}},
        "Upload-Expires": {"description": "HTTP-date (IMF-fixdate) after which the unfinished "
                                          "upload answers 410: `uploads.expiry_s` (86400 s by "
                                          "default) after creation. Fixed at creation, not extended "
                                          "by `PATCH`.",
                           "schema": {"type": "string"},
                           "example": "Wed, 25 Nov 2026 18:24:50 GMT"},
        "Media-Id": {"description": "The media the upload became, once complete: use it with "
                                    "`/v1/media/{id}` (metadata, tokens, deletion).",
                     "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
        "Location-Upload": {"description": "The upload's URL: `{server.public_url}/v1/uploads/{uid}`, "
                                           "or the relative reference `/v1/uploads/{uid}` when "
                                           "`server.public_url` is empty.",
                            "schema": {"type": "string", "pattern": "/v1/uploads/[0-9a-f]{32}$"}},
        "Cache-Control-No-Store": {"description": "Always `no-store`: upload state must not be cached.",
                                   "schema": {"type": "string", "const": "no-store"}},
        "Cache-Control-Sealed": {"description": "`no-store` on seal-for-me answers (the body carries "
                                                "the media key); absent on sealed uploads.",
                                 "schema": {"type": "string", "const": "no-store"}},
    }

    parameters = {
        "X-Request-Id": {
            "name": "X-Request-Id",
            "in": "header",
            "required": False,
            "description": "Correlation id to use in the service's logs (1-64 characters of "
                           "`[A-Za-z0-9-]`; anything else is replaced by a fresh id). Echoed on the answer.",
            "schema": {"type": "string", "maxLength": 64},
        },
        "Range": {
            "name": "Range",
            "in": "header",
            "required": False,
            "description": "One byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n`. Multiple ranges "
                           "and anything unparseable are ignored (whole blob, 200).",
            "schema": {"type": "string"},
            "example": "bytes=0-65535",
        },
        "If-None-Match": {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "ETags (or `*`) the client already has; a match answers 304. Checked before `Range`.",
            "schema": {"type": "string"},
        },
        "If-Range": {
            "name": "If-Range",
            "in": "header",
            "required": False,
            "description": "Honour `Range` only if this equals the current ETag; otherwise send the whole blob.",
            "schema": {"type": "string"},
        },
        "Tus-Resumable": {
            "name": "Tus-Resumable",
            "in": "header",
            "required": True,
            "description": "The tus protocol version: must be `1.0.0`. Missing or another value "
                           "answers 412 `tus-version-unsupported` (after the API key is checked).",
            "schema": {"type": "string", "const": "1.0.0"},
        },
        "Upload-Checksum": {
            "name": "Upload-Checksum",
            "in": "header",
            "required": False,
            "description": "tus checksum extension: `sha256 <base64>`, the SHA-256 of this "
                           "request's body (not of the blob), standard base64 with padding. The "
                           "body is checked before any of it is stored: a mismatch answers 460 "
                           "`checksum-mismatch` on `PATCH` (on creation-with-upload the body is "
                           "dropped and the upload created at offset 0). Another algorithm answers "
                           "400 `checksum-algorithm-unsupported`, a malformed value 400 "
                           "`invalid-field`.",
            "schema": {"type": "string"},
            "example": "sha256 uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
        },
    }

    info_desc = """\
The media host for messaging interoperability: gateway servers upload sealed (end-to-end
encrypted) attachments and mint short-lived download tokens; partner apps and peer media
proxies fetch the blobs with those tokens.

**Authentication.** Gateway routes (`/v1/media…`, and `/v1/uploads…` except `OPTIONS`) take
the partner API key as `Authorization: Bearer <key>`; the service stores only its SHA-256. Keys carry scopes
(`upload`, `token`, `delete`, `seal`), named in each operation's security requirement; a key
without the needed scope gets 403 `forbidden`. A partner sees only its own media: another
partner's media answers 404. Download routes need no key: the token in the path is the
capability. Operations routes (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`) are
unauthenticated and should be protected by network policy.

**Errors.** Every error the service produces is an RFC 9457 `application/problem+json`
document (schema `Problem`) with a stable `code`; each response below lists the codes it can
carry. 5xx answers never carry internal detail: they have no `detail` member. Every problem
carries `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`; every 503 problem
carries `Retry-After` (seconds); 401 `unauthenticated` carries `WWW-Authenticate: Bearer`.

Unknown paths answer 404 `not-found` (response `NotFound`). A known path with a method it does
not serve answers 405 `method-not-allowed` with `Allow` listing the methods it serves (response
`MethodNotAllowed`; e.g. `PUT /v1/media` → `Allow: POST`, `HEAD /v1/media/{id}` →
`Allow: GET, DELETE`); no API key is needed to learn this. A malformed query string answers 400
`invalid-field`. Errors raised by the HTTP layer before the service sees the request (malformed
HTTP, oversized headers) may be plain text.

**Request ids.** Every answer carries `X-Request-Id`.

**Resumable uploads (tus 1.0, tag `tus`).** `/v1/uploads/` (also served as `/v1/uploads`)
speaks tus 1.0.0 with the extensions creation, creation-with-upload, expiration, checksum
(`sha256`) and termination; not creation-defer-length or concatenation. A tus upload ends as
the same media `POST /v1/media` would store from the same blob: same key and scope
(`upload`), kind limits, format length rules, SHA-256 check, media id and deduplication, and
sealed at rest the same way. How the protocol maps onto the service:

- `X-Media-Kind`, `X-Media-Format`, `X-Media-Sha256` → `Upload-Metadata` keys `kind`,
  `format`, `sha256` (values base64-encoded, as tus encodes metadata); the blob's length →
  `Upload-Length` (required, checked against the limits at creation: 413/422 before any byte).
- The media → `Media-Id` on the `POST` or `PATCH` that completes the upload and on every later
  `HEAD`; then mint tokens with `POST /v1/media/{Media-Id}/tokens` as usual. The media's
  `created_at`, and so its retention, counts from the upload's creation.
- Every request but `OPTIONS` needs the API key (checked first: 401) and
  `Tus-Resumable: 1.0.0` (412 `tus-version-unsupported` with `Tus-Version`). Every answer under
  `/v1/uploads`, problem or not, carries `Tus-Resumable: 1.0.0`.
- tus errors are problem documents like all others: 409 `upload-offset-mismatch` /
  `upload-busy`, 410 `upload-expired`, 412, 415 `unsupported-content-type`, 460
  `checksum-mismatch` (tus's own status; the status line has no reason phrase, `title` is
  `Checksum Mismatch`), and 422 `digest-mismatch` when the whole blob does not match `sha256`
  (the upload is then discarded).
- After any failed or interrupted `PATCH`, `HEAD` and continue from the `Upload-Offset` it
  reports: a `PATCH` that ends early commits what it received (unless it carried
  `Upload-Checksum`).

**Where upload state lives.** Nowhere in a replica: any replica serves any request of any
upload, with no sticky sessions, and a client may move between replicas mid-upload. The state
is a log of records in the object store under `uploads/{uid}/`, each sealed (AES-256-GCM under
the master key ring; the store sees neither partner, digest nor offsets) and only ever
created, never overwritten: appending the next record with create-if-absent is the
compare-and-swap that makes one of two racing requests win and the other answer 409. A
`PATCH` holds the upload with a lease record (`uploads.lease_s`, 60 s by default, renewed while
it runs), so a replica that dies mid-`PATCH` blocks its upload (409 `upload-busy`) for at most
that long. Received bytes are sealed as they arrive and written as parts of the final media
object's multipart upload (part objects under `uploads/{uid}/` on local-file storage), the
remainder below a part staged sealed; a new offset is recorded, and reported by `HEAD`, only
once its bytes are durable. A `PATCH` with `Upload-Checksum` is spooled to an unlinked local
temp file until verified. The media object becomes visible only when the last byte has arrived
and the whole blob's SHA-256 matched. Unfinished uploads expire `uploads.expiry_s` after
creation (`Upload-Expires`, 86400 s by default) and then answer 410; `interop-media sweep`
removes expired uploads (finished or not; a finished upload answers `HEAD` with its
`Media-Id` until then), aborts their multipart uploads, and removes terminated ones.

**Seal-for-me uploads.** With `POST /v1/media?seal=whatsapp|signal` and scope `seal`, a gateway
sends the plaintext attachment instead of a sealed blob. The service sniffs its type against
the kind's allow-list, decodes it in a sandboxed worker process to learn what the recipient's
client shows (dimensions, duration, waveform, thumbnail, blurhash), removes EXIF, XMP, GPS and
other metadata from photos, seals it in the requested format under a fresh key and stores the
sealed blob as an ordinary media. The key and everything the gateway puts into its end-to-end
encrypted message come back in the answer (`SealedMedia`), never stored by the service. The
plaintext lives only in a private temporary directory for the duration of the request.
Deployments with `media.workers = 0` answer 501 `not-implemented`.
"""

    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "interop-media",
            "version": "0.1.0",
            "summary": "Sealed E2EE attachments, encrypted object storage, short-lived download tokens.",
            "description": info_desc,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "gateway", "description": "Partner gateway servers (API key)."},
            {"name": "download", "description": "Token holders: partner apps, peer media proxies."},
            {"name": "tus", "description": "Resumable uploads for partner gateways (tus 1.0.0 at "
                                           "`/v1/uploads/`; API key with scope `upload`, except "
                                           "`OPTIONS`). A finished upload is an ordinary media. "
                                           "See the API description for the protocol mapping and "
                                           "where upload state lives.",
             "externalDocs": {"description": "tus resumable upload protocol 1.0.0",
                              "url": "https://tus.io/protocols/resumable-upload"}},
            {"name": "ops", "description": "Health, readiness, metrics, this document."},
        ],
        "security": [{"partnerKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "partnerKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Partner API key (`imk_…`, from `interop-media keygen`). Scopes "
                                   "listed in a security requirement are the key's scopes the "
                                   "operation needs.",
                }
            },
            "schemas": schemas,
            "responses": router_responses(),
            "parameters": parameters,
            "headers": headers,
        },
    }
    return doc


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")
    with open(out, "w") as f:
        json.dump(build(), f, indent=2, ensure_ascii=False)
        f.write("\n")

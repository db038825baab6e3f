#!/usr/bin/env bash
# Seal-for-me throughput: requests/s of POST /v1/media?seal=whatsapp for a ~200 KB photo
# (JPEG with EXIF/GPS, 1600x1200), on the release binary with its default worker pool
# (media.workers = 2 on this 2-core machine), loopback, wrk -t2 -c8 for DURATION.
#
#   bash benches/seal_load.sh            DURATION=20s WORKERS=2 SKIP_BUILD=1
#
# Everything it starts is stopped by pid on exit; the temp dir is removed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-20s}"
WORKERS="${WORKERS:-2}"
BIN="${BIN:-$ROOT/target/release/interop-media}"
export RUST_LOG="${RUST_LOG:-warn}"
for t in wrk convert exiftool; do
    command -v "$t" >/dev/null || { echo "seal_load.sh needs $t" >&2; exit 2; }
done
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --quiet

WORK="$(mktemp -d -t interop-media-seal.XXXXXX)"
PID=""
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

convert -size 1600x1200 plasma:fractal -quality 70 "$WORK/photo.jpg"
exiftool -q -overwrite_original -n -GPSLatitude=48.8584 -GPSLatitudeRef=N \
    -GPSLongitude=2.2945 -GPSLongitudeRef=E -Model=Bench "$WORK/photo.jpg"
echo "photo: $(stat -c%s "$WORK/photo.jpg") bytes"

INTEROP_MEDIA_MEDIA__WORKERS="$WORKERS" "$BIN" serve --dev --listen 127.0.0.1:0 \
    --data-dir "$WORK/data" > "$WORK/stdout" 2> "$WORK/stderr" &
PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/stdout" 2>/dev/null && break; sleep 0.1; done
ADDR="$(grep -o 'listening on [0-9.:]*' "$WORK/stdout" | awk '{print $3}')"
KEY="$(cat "$WORK/data/dev-partner-key")"
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$ADDR/v1/media?seal=whatsapp" \
    -H "Authorization: Bearer $KEY" -H 'X-Media-Kind: image' --data-binary @"$WORK/photo.jpg")"
[ "$code" = 201 ] || { echo "warm-up request answered $code" >&2; cat "$WORK/stderr" >&2; exit 1; }

echo "wrk -t2 -c8 -d$DURATION (media.workers=$WORKERS)"
KEY="$KEY" PHOTO="$WORK/photo.jpg" wrk -t2 -c8 -d"$DURATION" --latency \
    -s "$ROOT/benches/seal.lua" "http://$ADDR"
echo "peak RSS of the service: $(grep VmHWM /proc/$PID/status | awk '{print $2, $3}')"
# wrk's per-thread Lua states cannot report statuses reliably: count what was stored instead
# (every accepted request stores one new object; the warm-up stored one).
echo "media objects stored: $(find "$WORK/data/objects/media" -type f | wc -l) (warm-up included)"

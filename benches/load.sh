#!/usr/bin/env bash
# Load test of the release binary on loopback (127.0.0.1 only; bounded in time; everything it
# starts is stopped by pid on exit).
#
#   bash benches/load.sh                      # build, measure everything, print a summary
#   DURATION=5s SKIP_NGINX=1 bash benches/load.sh
#
# Phases (each on a fresh `serve --dev` with its own temp data dir, removed afterwards):
#   a. uploads, every request a *distinct* blob (the service deduplicates identical blobs from
#      the same partner with a 200 and stores nothing, which would measure the wrong thing):
#      64 KiB with wrk + benches/upload.lua (digests precomputed by benches/load_client.py),
#      16 MiB with benches/load_client.py (Python threads sending shared memoryviews: at that
#      size per-request client overhead is negligible, while wrk's Lua would copy 32 MiB per
#      request on the same 2 cores).
#   b. downloads through a token URL (POST /v1/media/{id}/tokens), wrk on GET /v1/download/{t},
#      64 KiB and 16 MiB, plus a tampered token (rejection rate).
#   c. peak RSS (VmHWM from /proc/PID/status) of a fresh server during 32 concurrent 256 MiB
#      uploads (distinct blobs, Content-Length set, streamed by the client without buffering).
#   d. anchors on the same machine: ../shared/reference/anchors/anchor-nginx.sh (if present)
#      and `openssl speed -evp aes-256-gcm -seconds 3`.
#
# Knobs: DURATION (10s) THREADS (2) CONNS (32) UPLOAD_CONC (8, 16 MiB uploads) RSS_UPLOADS (32)
#        RSS_SIZE_MIB (256) UPLOAD_DIGESTS (300000) BIN (target/release/interop-media)
#        SKIP_BUILD=1 SKIP_NGINX=1 SKIP_OPENSSL=1 OHA=1 (also run oha on downloads if on PATH)
#        RUST_LOG (default warn, so per-request logging does not dominate)
# The client and the server share the machine's cores: numbers are "what this box does end to
# end", like the baseline in ../shared/reference/machine-baseline.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HERE="$ROOT/benches"

DURATION="${DURATION:-10s}"
THREADS="${THREADS:-2}"
CONNS="${CONNS:-32}"
UPLOAD_CONC="${UPLOAD_CONC:-8}"
RSS_UPLOADS="${RSS_UPLOADS:-32}"
RSS_SIZE_MIB="${RSS_SIZE_MIB:-256}"
UPLOAD_DIGESTS="${UPLOAD_DIGESTS:-300000}"
BIN="${BIN:-$ROOT/target/release/interop-media}"
export RUST_LOG="${RUST_LOG:-warn}"
DUR_S="${DURATION%s}"
case "$DUR_S" in '' | *[!0-9]*) echo "DURATION must be whole seconds like 10s" >&2; exit 2 ;; esac

WORK="$(mktemp -d -t interop-media-load.XXXXXX)"
SVC_PID=""
SVC_DIR=""
SUMMARY=()

stop_service() {
    if [ -n "$SVC_PID" ] && kill -0 "$SVC_PID" 2>/dev/null; then
        kill -TERM "$SVC_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SVC_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$SVC_PID" 2>/dev/null; then
            echo "# service (pid $SVC_PID) ignored SIGTERM for 10 s; killing" >&2
            kill -KILL "$SVC_PID" 2>/dev/null || true
        fi
        local rc=0
        wait "$SVC_PID" 2>/dev/null || rc=$?
        echo "# service (pid $SVC_PID) stopped, exit code $rc"
    fi
    SVC_PID=""
    if [ -n "$SVC_DIR" ]; then rm -rf "$SVC_DIR"; SVC_DIR=""; fi
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_service
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

section() { printf '\n==== %s\n' "$*"; }
summary() { SUMMARY+=("$(printf '%-44s %s' "$1" "$2")"); }

# ---- tools -------------------------------------------------------------------------------
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
    echo "# installing: ${need[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

mkdir -p "$ROOT/target/bench"
LOG="$ROOT/target/bench/load-$(date +%Y%m%d-%H%M%S).txt"
exec > >(tee -a "$LOG") 2>&1
echo "# interop-media load test, $(date -u +%FT%TZ), $(nproc) cpus, $(uname -r)"
echo "# DURATION=$DURATION THREADS=$THREADS CONNS=$CONNS UPLOAD_CONC=$UPLOAD_CONC RUST_LOG=$RUST_LOG"
echo "# $(wrk --version 2>&1 | head -n1)"

# ---- build -------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    section "cargo build --release"
    cargo build --release
fi
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }

# ---- service -----------------------------------------------------------------------------
start_service() {
    SVC_DIR="$(mktemp -d -p "$WORK" data.XXXXXX)"
    local out="$SVC_DIR.stdout" err="$SVC_DIR.stderr" addr=""
    "$BIN" serve --dev --listen 127.0.0.1:0 --data-dir "$SVC_DIR" >"$out" 2>"$err" &
    SVC_PID=$!
    for _ in $(seq 300); do
        addr="$(sed -n 's/.*listening on \(http:\/\/\)\{0,1\}\([0-9.]*:[0-9]*\).*/\2/p' "$out" | head -n1)"
        [ -n "$addr" ] && break
        if ! kill -0 "$SVC_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        echo "service did not print 'listening on' within 30 s; stderr:" >&2
        tail -n 50 "$err" >&2 || true
        exit 1
    fi
    BASE="http://$addr"
    for _ in $(seq 50); do [ -s "$SVC_DIR/dev-partner-key" ] && break; sleep 0.1; done
    KEY="$(tr -d '[:space:]' <"$SVC_DIR/dev-partner-key")"
    echo "# service pid $SVC_PID on $BASE, data dir $SVC_DIR"
}

vm() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }

# wrk output -> fields
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_pct() { awk -v p="$2%" '$1 == p { print $2 }' "$1"; }
wrk_non2xx() { awk '/Non-2xx or 3xx responses:/ { print $NF }' "$1"; }
mbps() { python3 -c "import sys; print(round(float(sys.argv[1]) * int(sys.argv[2]) / 1e6, 1))" "$1" "$2"; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

run_wrk() { # run_wrk OUTFILE ARGS... (bounded by -d plus a margin)
    local out="$1"; shift
    timeout -k 5 $((DUR_S + 60)) wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" | tee "$out"
}

# ---- a. uploads --------------------------------------------------------------------------
section "a1. upload 64 KiB, distinct blobs (wrk + upload.lua, -t$THREADS -c$CONNS -d$DURATION)"
SIZE=$((64 * 1024))
head -c $((SIZE - 16)) /dev/urandom >"$WORK/prefix64k"
python3 "$HERE/load_client.py" digests "$WORK/prefix64k" "$UPLOAD_DIGESTS" "$WORK/digests64k"
start_service
BENCH_KEY="$KEY" BENCH_PREFIX_FILE="$WORK/prefix64k" BENCH_DIGESTS_FILE="$WORK/digests64k" \
    BENCH_THREADS="$THREADS" run_wrk "$WORK/a1.txt" -s "$HERE/upload.lua" "$BASE/v1/media"
read -r created dedup other secs < <(awk '/^STATUSES/ {
    split($2, a, "="); split($3, b, "="); split($4, c, "="); split($5, d, "=");
    print a[2], b[2], c[2], d[2] }' "$WORK/a1.txt") || { created=0 dedup=0 other=0 secs=1; }
# Successful uploads only (wrk's own Requests/sec would count errors too).
rps="$(python3 -c "print(round(($created + $dedup) / $secs, 1))")"
summary "upload 64 KiB (wrk, c=$CONNS)" \
    "$rps req/s, $(mbps "$rps" "$SIZE") MB/s, p50 $(wrk_pct "$WORK/a1.txt" 50), p99 $(wrk_pct "$WORK/a1.txt" 99); 201=$created 200(dedup)=$dedup other=$other; server VmHWM $(vm "$SVC_PID" VmHWM) MiB"
stop_service

section "a2. upload 16 MiB, distinct blobs (load_client.py, $UPLOAD_CONC connections, $DURATION)"
start_service
line="$(timeout -k 5 $((DUR_S + 300)) python3 "$HERE/load_client.py" upload --base "$BASE" --key "$KEY" \
    --size $((16 * 1024 * 1024)) --concurrency "$UPLOAD_CONC" --duration "$DUR_S" | tee /dev/stderr | sed -n 's/^RESULT //p')" || true
if [ -n "$line" ]; then
    summary "upload 16 MiB (python, c=$UPLOAD_CONC)" \
        "$(json_field "$line" req_per_s) req/s, $(json_field "$line" mb_per_s) MB/s, p50 $(json_field "$line" p50_ms) ms, p99 $(json_field "$line" p99_ms) ms; statuses $(json_field "$line" statuses); client CPU $(json_field "$line" client_cpu_s) s; server VmHWM $(vm "$SVC_PID" VmHWM) MiB"
else
    summary "upload 16 MiB (python, c=$UPLOAD_CONC)" "FAILED (see log)"
fi
stop_service

# ---- b. downloads ------------------------------------------------------------------------
section "b. download via token URL (wrk -t$THREADS -c$CONNS -d$DURATION)"
start_service
for spec in "64k:$((64 * 1024))" "16m:$((16 * 1024 * 1024))"; do
    name="${spec%%:*}"; size="${spec#*:}"
    url="$(python3 "$HERE/load_client.py" mint --base "$BASE" --key "$KEY" --size "$size")"
    got="$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' "$url")"
    echo "# $name token URL check: HTTP status and bytes = $got (expected 200 $size)"
    run_wrk "$WORK/b-$name.txt" "$url"
    rps="$(wrk_rps "$WORK/b-$name.txt")"
    bad="$(wrk_non2xx "$WORK/b-$name.txt")"
    summary "download $name via token (wrk, c=$CONNS)" \
        "$rps req/s, $(mbps "$rps" "$size") MB/s, p50 $(wrk_pct "$WORK/b-$name.txt" 50), p99 $(wrk_pct "$WORK/b-$name.txt" 99)${bad:+, NON-2xx: $bad}"
    if [ "${OHA:-0}" = 1 ] && command -v oha >/dev/null 2>&1; then
        timeout -k 5 $((DUR_S + 60)) oha --no-tui -z "$DURATION" -c "$CONNS" "$url" | tee "$WORK/b-$name-oha.txt"
        summary "download $name via token (oha, c=$CONNS)" \
            "$(awk '/Requests\/sec:/ { print $2 }' "$WORK/b-$name-oha.txt") req/s"
    fi
    last_url="$url"
done
# Tampered token: flip the last character.
last="${last_url: -1}"; [ "$last" = A ] && repl=B || repl=A
tampered="${last_url%?}$repl"
code="$(curl -sS -o /dev/null -w '%{http_code}' "$tampered")"
echo "# tampered token answers HTTP $code"
run_wrk "$WORK/b-bad.txt" "$tampered"
summary "tampered token -> $code (wrk, c=$CONNS)" \
    "$(wrk_rps "$WORK/b-bad.txt") req/s, p50 $(wrk_pct "$WORK/b-bad.txt" 50), p99 $(wrk_pct "$WORK/b-bad.txt" 99)"
summary "server VmHWM after downloads" "$(vm "$SVC_PID" VmHWM) MiB"
stop_service

# ---- c. peak RSS ---------------------------------------------------------------------------
section "c. peak RSS: $RSS_UPLOADS concurrent uploads of $RSS_SIZE_MIB MiB (fresh server)"
start_service
idle="$(vm "$SVC_PID" VmHWM)"
line="$(timeout -k 5 900 python3 "$HERE/load_client.py" upload --base "$BASE" --key "$KEY" \
    --size $((RSS_SIZE_MIB * 1024 * 1024)) --concurrency "$RSS_UPLOADS" --count "$RSS_UPLOADS" \
    --watch-pid "$SVC_PID" | tee /dev/stderr | sed -n 's/^RESULT //p')" || true
if [ -n "$line" ]; then
    summary "peak RSS, ${RSS_UPLOADS}x${RSS_SIZE_MIB} MiB concurrent" \
        "VmHWM $(json_field "$line" server_vmhwm_mib) MiB (idle $idle MiB), sampled max RSS $(json_field "$line" server_max_rss_mib) MiB; $(json_field "$line" mb_per_s) MB/s aggregate in $(json_field "$line" seconds) s; statuses $(json_field "$line" statuses)"
else
    summary "peak RSS, ${RSS_UPLOADS}x${RSS_SIZE_MIB} MiB concurrent" "FAILED (see log); VmHWM $(vm "$SVC_PID" VmHWM) MiB"
fi
stop_service

# ---- d. anchors ----------------------------------------------------------------------------
ANCHOR="$ROOT/../shared/reference/anchors/anchor-nginx.sh"
if [ "${SKIP_NGINX:-0}" != 1 ] && [ -f "$ANCHOR" ]; then
    section "d1. nginx secure_link anchor ($ANCHOR)"
    DURATION="$DURATION" CONNS="$CONNS" THREADS="$THREADS" timeout -k 10 600 bash "$ANCHOR" \
        | tee "$WORK/nginx.txt" || echo "# nginx anchor failed"
    while IFS= read -r row; do
        summary "nginx: ${row%%  *}" "$(echo "${row#*  }" | tr -s ' ' | sed 's/^ //')"
    done < <(grep -E '^(valid link|wrong md5|expired link)' "$WORK/nginx.txt" || true)
    summary "nginx columns" "req/s MB/s p50 p99 non2xx (anchor-nginx.sh, same wrk settings)"
fi
if [ "${SKIP_OPENSSL:-0}" != 1 ]; then
    section "d2. openssl speed -evp aes-256-gcm -seconds 3"
    openssl speed -evp aes-256-gcm -seconds 3 2>/dev/null | tee "$WORK/openssl.txt"
    # Columns: 16, 64, 256, 1024, 8192, 16384 bytes (in 1000s of bytes per second).
    k16="$(awk 'tolower($1) == "aes-256-gcm" { print $NF }' "$WORK/openssl.txt" | tr -d k)"
    [ -n "$k16" ] && summary "openssl AES-256-GCM, 1 core, 16 KiB blocks" \
        "$(python3 -c "print(round(float('$k16') / 1e6, 2))") GB/s (row: $(grep -i '^aes-256-gcm' "$WORK/openssl.txt" | tr -s ' '))"
fi

section "summary"
printf '%s\n' "${SUMMARY[@]}"
echo "# full log: $LOG"

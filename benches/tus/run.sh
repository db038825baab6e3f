#!/usr/bin/env bash
# Resumable-upload benchmark on loopback (127.0.0.1 only, random free ports; everything it
# starts is stopped by pid on exit and its temp dirs are removed). See benches/tus/README.md.
#
#   bash benches/tus/run.sh                          # build, measure, print a summary table
#   SKIP_BUILD=1 SIZE_MIB=16 RSS_SIZE_MIB=16 ROUNDS=1 bash benches/tus/run.sh   # quick check
#
# One S3-compatible server for everything: the official s3s-fs 0.14.1 binary (installed into
# target/tools if missing), SigV4 checked, two buckets (`interop-media`, `tus-server`).
#
#   1. Throughput, ROUNDS rounds, the order rotating each round, every upload a fresh random
#      file of SIZE_MIB MiB (the service deduplicates identical blobs, which would measure
#      the wrong thing):
#        (a) interop-media tus 1.0 at /v1/uploads/: tus-js-client, one PATCH (chunkSize Infinity)
#        (b) interop-media `POST /v1/media` of a file of the same size: curl --data-binary
#        (c) @tus/server + @tus/s3-store (partSize 8 MiB): tus-js-client, one PATCH
#      Reported: median MB/s (10^6 bytes/s) of each and the ratios median(a)/median(b),
#      median(a)/median(c). Every upload is checked afterwards (stored size, media id).
#      Controls (CONTROLS=1, the default), in the same rotation: (a') and (c') are the same
#      tus uploads sent with curl (POST creation, then one PATCH --data-binary), to separate
#      tus-js-client's own cost on the shared cores from the servers'.
#   2. Peak RSS: a fresh interop-media, RSS_UPLOADS concurrent tus uploads of distinct
#      RSS_SIZE_MIB MiB files, then VmHWM from /proc/PID/status; the same files to a fresh
#      @tus/server. Control (CONTROLS=1): the same files as concurrent `POST /v1/media` on a
#      fresh interop-media, the service's non-resumable path.
#
# Knobs: ROUNDS (3) SIZE_MIB (256) RSS_UPLOADS (16) RSS_SIZE_MIB (256) SKIP_RSS=1 CONTROLS (1)
#        SKIP_BUILD=1 BIN (target/release/interop-media) RUST_LOG (warn)
#        TUS_MAX_CONCURRENT_PART_UPLOADS (unset: @tus/s3-store's default, 60)
# Needs: cargo, node >= 20 + npm, curl, sha256sum. Client, servers and S3 share the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/benches/tus"

ROUNDS="${ROUNDS:-3}"
SIZE_MIB="${SIZE_MIB:-256}"
RSS_UPLOADS="${RSS_UPLOADS:-16}"
RSS_SIZE_MIB="${RSS_SIZE_MIB:-256}"
BIN="${BIN:-$ROOT/target/release/interop-media}"
S3S_FS_VERSION=0.14.1
S3S_FS="$ROOT/target/tools/bin/s3s-fs"
export RUST_LOG="${RUST_LOG:-warn}"
CONTROLS="${CONTROLS:-1}"
for v in ROUNDS SIZE_MIB RSS_UPLOADS RSS_SIZE_MIB; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "$v must be a positive integer" >&2; exit 2 ;; esac
done

WORK="$(mktemp -d -t interop-media-tus.XXXXXX)"
S3_PID="" IM_PID="" TUS_PID=""
IM_DIR="" TUS_TMP=""
FAILURES=0

# stop_pid NAME PID: SIGTERM, up to 10 s, then SIGKILL; only this pid.
stop_pid() {
    local name="$1" pid="$2" rc=0
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "# $name (pid $pid) ignored SIGTERM for 10 s; killing" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || rc=$?
    echo "# $name (pid $pid) stopped, exit code $rc"
}
stop_im() { stop_pid interop-media "$IM_PID"; IM_PID=""; }
stop_tus() { stop_pid @tus/server "$TUS_PID"; TUS_PID=""; }
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    trap '' PIPE
    stop_im
    stop_tus
    stop_pid s3s-fs "$S3_PID"
    S3_PID=""
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

section() { printf '\n==== %s\n' "$*"; }
fail() { FAILURES=$((FAILURES + 1)); echo "!! $*" >&2; }
randhex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
# jget FILE PATH: a field of a JSON file, PATH like `per_upload.0.media_id` (empty if absent).
jget() {
    node -e 'let v; try { v = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")) } catch {}
             for (const k of process.argv[2].split(".")) v = v == null ? v : v[k];
             console.log(v == null ? "" : String(v))' "$1" "$2"
}
# calc EXPR with numbers: floating-point arithmetic in awk.
calc() { awk "BEGIN { printf \"%.2f\", $* }"; }
calc3() { awk "BEGIN { printf \"%.3f\", $* }"; }
median() { [ "$#" -gt 0 ] || { echo nan; return; }; printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) printf "%.2f", a[(NR + 1) / 2]; else printf "%.2f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
vm() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }
# gen_file PATH MIB: fresh random content plus PATH.sha256 (hex), read by client.mjs too.
gen_file() {
    head -c $(($2 * 1024 * 1024)) /dev/urandom >"$1"
    sha256sum "$1" | cut -d' ' -f1 >"$1.sha256"
}
# wait_line FILE SED_EXPR PID WHAT: poll FILE until SED_EXPR prints something (30 s).
wait_line() {
    local file="$1" expr="$2" pid="$3" what="$4" out=""
    for _ in $(seq 300); do
        out="$(sed -n "$expr" "$file" 2>/dev/null | head -n1)"
        [ -n "$out" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$out" ]; then
        echo "$what did not report its address within 30 s; its output:" >&2
        tail -n 40 "$file" >&2 || true
        exit 1
    fi
    printf '%s' "$out"
}

# ---- tools -------------------------------------------------------------------------------
for tool in node npm curl sha256sum cargo; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run.sh needs $tool on PATH" >&2; exit 2; }
done

mkdir -p "$ROOT/target/bench"
LOG="$ROOT/target/bench/tus-$(date +%Y%m%d-%H%M%S).txt"
# tee -i: a Ctrl-C must not take the log (and with it the cleanup messages) down first.
exec > >(tee -i -a "$LOG") 2>&1
echo "# interop-media tus benchmark, $(date -u +%FT%TZ), $(nproc) cpus, $(uname -r), node $(node --version)"
echo "# ROUNDS=$ROUNDS SIZE_MIB=$SIZE_MIB RSS_UPLOADS=$RSS_UPLOADS RSS_SIZE_MIB=$RSS_SIZE_MIB RUST_LOG=$RUST_LOG"
echo "# interop-media at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes in src/')"

if [ ! -d "$HERE/node_modules/@tus/server" ] || [ ! -d "$HERE/node_modules/@tus/s3-store" ] \
    || [ ! -d "$HERE/node_modules/tus-js-client" ]; then
    section "npm ci (benches/tus/package-lock.json)"
    (cd "$HERE" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
pkgver() { node -p "require('$HERE/node_modules/$1/package.json').version"; }
echo "# @tus/server $(pkgver @tus/server), @tus/s3-store $(pkgver @tus/s3-store), tus-js-client $(pkgver tus-js-client), @aws-sdk/client-s3 $(pkgver @aws-sdk/client-s3)"

if ! "$S3S_FS" --version 2>/dev/null | grep -qx "s3s-fs $S3S_FS_VERSION"; then
    section "cargo install s3s-fs $S3S_FS_VERSION into target/tools"
    cargo install --locked s3s-fs --version "$S3S_FS_VERSION" --features binary --root "$ROOT/target/tools"
fi
echo "# $("$S3S_FS" --version)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    section "cargo build --release"
    cargo build --release
fi
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }

# ---- S3 (s3s-fs) -------------------------------------------------------------------------
section "s3s-fs"
S3_ROOT="$WORK/s3"
mkdir -p "$S3_ROOT"
export S3_ACCESS_KEY_ID="AK$(randhex 8 | tr 'a-f' 'A-F')"
export S3_SECRET_ACCESS_KEY="$(randhex 20)"
export S3_REGION=us-east-1
# Only s3s-fs's own startup lines (its per-request logging is at debug).
RUST_LOG=s3s_fs=info "$S3S_FS" --host 127.0.0.1 --port 0 --access-key "$S3_ACCESS_KEY_ID" \
    --secret-key "$S3_SECRET_ACCESS_KEY" "$S3_ROOT" >"$WORK/s3s-fs.log" 2>&1 &
S3_PID=$!
S3_ADDR="$(wait_line "$WORK/s3s-fs.log" 's/.*server is running at http:\/\/\([0-9.]*:[0-9]*\).*/\1/p' "$S3_PID" s3s-fs)"
export S3_ENDPOINT="http://$S3_ADDR"
IM_BUCKET=interop-media
TUS_BUCKET=tus-server
NODE_NO_WARNINGS=1 node "$HERE/s3.mjs" mb "$IM_BUCKET" "$TUS_BUCKET"
echo "# s3s-fs pid $S3_PID on $S3_ENDPOINT, root $S3_ROOT"

# ---- servers -----------------------------------------------------------------------------
start_im() {
    IM_DIR="$(mktemp -d -p "$WORK" im-data.XXXXXX)"
    INTEROP_MEDIA_STORAGE__URL="s3://$IM_BUCKET" \
    INTEROP_MEDIA_STORAGE__S3__ENDPOINT="$S3_ENDPOINT" \
    INTEROP_MEDIA_STORAGE__S3__REGION="$S3_REGION" \
    INTEROP_MEDIA_STORAGE__S3__ACCESS_KEY_ID="$S3_ACCESS_KEY_ID" \
    INTEROP_MEDIA_STORAGE__S3__SECRET_ACCESS_KEY="$S3_SECRET_ACCESS_KEY" \
    INTEROP_MEDIA_STORAGE__S3__ALLOW_HTTP=true \
    INTEROP_MEDIA_STORAGE__S3__PATH_STYLE=true \
        "$BIN" serve --dev --listen 127.0.0.1:0 --data-dir "$IM_DIR" >"$IM_DIR.stdout" 2>"$IM_DIR.stderr" &
    IM_PID=$!
    IM_BASE="http://$(wait_line "$IM_DIR.stdout" 's/.*listening on \(http:\/\/\)\{0,1\}\([0-9.]*:[0-9]*\).*/\2/p' "$IM_PID" interop-media)"
    for _ in $(seq 50); do [ -s "$IM_DIR/dev-partner-key" ] && break; sleep 0.1; done
    IM_KEY="$(tr -d '[:space:]' <"$IM_DIR/dev-partner-key")"
    local ready=""
    for _ in $(seq 100); do
        ready="$(curl -s -o /dev/null -w '%{http_code}' "$IM_BASE/readyz" || true)"
        [ "$ready" = 200 ] && break
        sleep 0.1
    done
    [ "$ready" = 200 ] || { echo "interop-media /readyz answers $ready" >&2; tail -n 40 "$IM_DIR.stderr" >&2; exit 1; }
    echo "# interop-media pid $IM_PID on $IM_BASE (storage s3://$IM_BUCKET), data dir $IM_DIR"
}
# Warnings and errors interop-media logged (RUST_LOG=warn), minus the --dev banner.
im_log_problems() {
    grep -v -e '--dev mode' -e '^dev partner key' "$IM_DIR.stderr" 2>/dev/null | grep -c . || true
}
show_im_log() {
    local n
    n="$(im_log_problems)"
    if [ "$n" != 0 ]; then
        echo "# interop-media logged $n line(s) at warn or above (first 20):"
        grep -v -e '--dev mode' -e '^dev partner key' "$IM_DIR.stderr" | head -n 20 | sed 's/^/#   /'
    fi
}
start_tus() {
    TUS_TMP="$(mktemp -d -p "$WORK" tus-tmp.XXXXXX)"
    # @tus/s3-store spools parts to os.tmpdir(): keep them in our temp dir.
    TMPDIR="$TUS_TMP" S3_BUCKET="$TUS_BUCKET" NODE_NO_WARNINGS=1 \
        node "$HERE/server.mjs" --port 0 >"$TUS_TMP.log" 2>&1 &
    TUS_PID=$!
    TUS_BASE="http://$(wait_line "$TUS_TMP.log" 's/^listening on \([0-9.]*:[0-9]*\).*/\1/p' "$TUS_PID" @tus/server)"
    echo "# @tus/server pid $TUS_PID on $TUS_BASE/files/ (bucket $TUS_BUCKET), TMPDIR $TUS_TMP"
}
show_tus_log() {
    if grep -q -v '^listening on' "$TUS_TMP.log"; then
        echo "# @tus/server output (first 20 lines):"
        grep -v '^listening on' "$TUS_TMP.log" | head -n 20 | sed 's/^/#   /'
    fi
}

# ---- uploads -----------------------------------------------------------------------------
# tus_upload NAME ENDPOINT KEY FILE...: tus-js-client; leaves JSON in $WORK/NAME.json.
tus_upload() {
    local name="$1" endpoint="$2" key="$3" rc=0
    shift 3
    local args=(--endpoint "$endpoint")
    [ -n "$key" ] && args+=(--key "$key")
    NODE_NO_WARNINGS=1 timeout -k 5 3600 node "$HERE/client.mjs" "${args[@]}" "$@" \
        >"$WORK/$name.json" 2>"$WORK/$name.err" || rc=$?
    if [ -s "$WORK/$name.err" ]; then sed 's/^/# client: /' "$WORK/$name.err"; fi
    return "$rc"
}

# check_im_media ID FILE: the media exists with the file's size.
check_im_media() {
    local id="$1" file="$2" size got
    size="$(stat -c %s "$file")"
    rm -f "$WORK/media.json"
    curl -sS -o "$WORK/media.json" "$IM_BASE/v1/media/$id" -H "Authorization: Bearer $IM_KEY" || true
    got="$(jget "$WORK/media.json" size)"
    [ "$got" = "$size" ] || { fail "interop-media media $id: size $got, expected $size"; return 1; }
}

run_a() { # interop-media tus
    local f="$WORK/a$1.bin" rc=0
    gen_file "$f" "$SIZE_MIB"
    tus_upload "a$1" "$IM_BASE/v1/uploads/" "$IM_KEY" "$f" || rc=$?
    if [ "$rc" = 0 ]; then
        local mbps id
        mbps="$(jget "$WORK/a$1.json" mb_per_s)"
        id="$(jget "$WORK/a$1.json" per_upload.0.media_id)"
        if [ -z "$id" ]; then
            fail "(a) round $1: the final PATCH answered without Media-Id"
        elif check_im_media "$id" "$f"; then
            A+=("$mbps")
            A_BY_ROUND[$1]="$mbps"
        fi
        echo "(a) interop-media tus        round $1: $mbps MB/s ($(jget "$WORK/a$1.json" per_upload.0.seconds) s), media $id"
    else
        fail "(a) interop-media tus round $1 failed (exit $rc)"
    fi
    rm -f "$f" "$f.sha256"
}

run_b() { # interop-media POST /v1/media
    local f="$WORK/b$1.bin" out code secs sha size
    gen_file "$f" "$SIZE_MIB"
    sha="$(cat "$f.sha256")"
    size="$(stat -c %s "$f")"
    out="$(timeout -k 5 3600 curl -sS -o "$WORK/b$1.json" -w '%{http_code} %{time_total}' \
        -X POST "$IM_BASE/v1/media" -H "Authorization: Bearer $IM_KEY" \
        -H "X-Media-Kind: document" -H "X-Media-Format: opaque" -H "X-Media-Sha256: $sha" \
        --data-binary @"$f")" || out="curl-failed 0"
    code="${out%% *}"
    secs="${out#* }"
    if [ "$code" = 201 ] && [ "$(jget "$WORK/b$1.json" size)" = "$size" ]; then
        local mbps
        mbps="$(calc "$size / 1e6 / $secs")"
        B+=("$mbps")
        B_BY_ROUND[$1]="$mbps"
        echo "(b) interop-media POST       round $1: $mbps MB/s ($secs s), media $(jget "$WORK/b$1.json" id)"
    else
        fail "(b) POST /v1/media round $1: HTTP $code, body: $(head -c 500 "$WORK/b$1.json" 2>/dev/null)"
    fi
    rm -f "$f" "$f.sha256"
}

run_c() { # @tus/server + @tus/s3-store
    local f="$WORK/c$1.bin" rc=0
    gen_file "$f" "$SIZE_MIB"
    tus_upload "c$1" "$TUS_BASE/files/" "" "$f" || rc=$?
    if [ "$rc" = 0 ]; then
        local mbps url id got size
        mbps="$(jget "$WORK/c$1.json" mb_per_s)"
        url="$(jget "$WORK/c$1.json" per_upload.0.url)"
        id="${url##*/}"
        size="$(stat -c %s "$f")"
        got="$(NODE_NO_WARNINGS=1 node "$HERE/s3.mjs" size "$TUS_BUCKET" "$id" 2>/dev/null || echo '?')"
        if [ "$got" = "$size" ]; then
            C+=("$mbps")
            C_BY_ROUND[$1]="$mbps"
        else
            fail "(c) round $1: stored object $id has size $got, expected $size"
        fi
        echo "(c) @tus/server + s3-store   round $1: $mbps MB/s ($(jget "$WORK/c$1.json" per_upload.0.seconds) s), object $id"
    else
        fail "(c) @tus/server round $1 failed (exit $rc)"
    fi
    rm -f "$f" "$f.sha256"
}

# Controls (CONTROLS=1): the same tus upload with curl (POST creation, then one PATCH of the
# file), so the tus-js-client rows can be told apart from client overhead on the shared cores.
# run_tus_curl NAME ENDPOINT KEY FILE: sets TC_MBPS TC_SECS TC_LOCATION TC_MEDIA_ID, or fails.
b64() { printf '%s' "$1" | base64 -w0; }
run_tus_curl() {
    local name="$1" endpoint="$2" key="$3" f="$4" size sha auth=() out code t1 t2 loc
    size="$(stat -c %s "$f")"
    sha="$(cat "$f.sha256")"
    [ -n "$key" ] && auth=(-H "Authorization: Bearer $key")
    out="$(curl -sS -o "$WORK/$name.create" -D "$WORK/$name.create.h" -w '%{http_code} %{time_total}' \
        -X POST "$endpoint" "${auth[@]}" -H "Tus-Resumable: 1.0.0" -H "Upload-Length: $size" \
        -H "Upload-Metadata: kind $(b64 document),format $(b64 opaque),sha256 $(b64 "$sha")")" \
        || out="curl-failed 0"
    code="${out%% *}"; t1="${out#* }"
    if [ "$code" != 201 ]; then
        fail "$name: creation answered HTTP $code: $(head -c 500 "$WORK/$name.create" 2>/dev/null)"
        return 1
    fi
    loc="$(sed -n 's/^[Ll]ocation: *\([^[:space:]]*\).*/\1/p' "$WORK/$name.create.h" | head -n1)"
    # Both servers answer with a path (Location: /v1/uploads/<id>, /files/<id>).
    case "$loc" in http*) ;; *) loc="$(printf '%s' "$endpoint" | sed -E 's|^(https?://[^/]+).*|\1|')$loc" ;; esac
    out="$(timeout -k 5 3600 curl -sS -o "$WORK/$name.patch" -D "$WORK/$name.patch.h" -w '%{http_code} %{time_total}' \
        -X PATCH "$loc" "${auth[@]}" -H "Tus-Resumable: 1.0.0" -H "Upload-Offset: 0" \
        -H "Content-Type: application/offset+octet-stream" --data-binary @"$f")" || out="curl-failed 0"
    code="${out%% *}"; t2="${out#* }"
    if [ "$code" != 204 ]; then
        fail "$name: PATCH $loc answered HTTP $code: $(head -c 500 "$WORK/$name.patch" 2>/dev/null)"
        return 1
    fi
    TC_LOCATION="$loc"
    TC_MEDIA_ID="$(sed -n 's/^[Mm]edia-[Ii]d: *\([0-9a-f]*\).*/\1/p' "$WORK/$name.patch.h" | head -n1)"
    TC_SECS="$(calc3 "$t1 + $t2")"
    TC_MBPS="$(calc "$size / 1e6 / ($t1 + $t2)")"
}
run_d() { # control: interop-media tus with curl
    local f="$WORK/d$1.bin"
    gen_file "$f" "$SIZE_MIB"
    if run_tus_curl "d$1" "$IM_BASE/v1/uploads/" "$IM_KEY" "$f"; then
        if [ -z "$TC_MEDIA_ID" ]; then
            fail "(a') round $1: the final PATCH answered without Media-Id"
        elif check_im_media "$TC_MEDIA_ID" "$f"; then
            D_BY_ROUND[$1]="$TC_MBPS"
        fi
        echo "(a') interop-media tus, curl round $1: $TC_MBPS MB/s ($TC_SECS s), media $TC_MEDIA_ID"
    fi
    rm -f "$f" "$f.sha256"
}
run_e() { # control: @tus/server with curl
    local f="$WORK/e$1.bin" got size
    gen_file "$f" "$SIZE_MIB"
    if run_tus_curl "e$1" "$TUS_BASE/files/" "" "$f"; then
        size="$(stat -c %s "$f")"
        got="$(NODE_NO_WARNINGS=1 node "$HERE/s3.mjs" size "$TUS_BUCKET" "${TC_LOCATION##*/}" 2>/dev/null || echo '?')"
        if [ "$got" = "$size" ]; then
            E_BY_ROUND[$1]="$TC_MBPS"
        else
            fail "(c') round $1: stored object ${TC_LOCATION##*/} has size $got, expected $size"
        fi
        echo "(c') @tus/server, curl       round $1: $TC_MBPS MB/s ($TC_SECS s), object ${TC_LOCATION##*/}"
    fi
    rm -f "$f" "$f.sha256"
}

# ---- 1. throughput -----------------------------------------------------------------------
section "1. throughput: $ROUNDS rounds of one $SIZE_MIB MiB upload each, order rotating each round"
A=() B=() C=()
declare -A A_BY_ROUND=() B_BY_ROUND=() C_BY_ROUND=() D_BY_ROUND=() E_BY_ROUND=()
start_im
start_tus
ORDER=(a b c)
[ "$CONTROLS" = 1 ] && ORDER+=(d e)
for r in $(seq 1 "$ROUNDS"); do
    for k in "${!ORDER[@]}"; do
        "run_${ORDER[$(((r - 1 + k) % ${#ORDER[@]}))]}" "$r"
    done
done
IM_HWM_1="$(vm "$IM_PID" VmHWM)"
TUS_HWM_1="$(vm "$TUS_PID" VmHWM)"
IM_WARN_1="$(im_log_problems)"
show_im_log
show_tus_log
stop_im
stop_tus

MED_A="$(median "${A[@]}")"
MED_B="$(median "${B[@]}")"
MED_C="$(median "${C[@]}")"
ratio() { if [ "$1" = nan ] || [ "$2" = nan ]; then echo n/a; else calc "$1 / $2"; fi; }
RATIO_AB="$(ratio "$MED_A" "$MED_B")"
RATIO_AC="$(ratio "$MED_A" "$MED_C")"
per_round() { # per_round ASSOC_X ASSOC_Y: "x/y" per round where both succeeded
    local -n x="$1" y="$2"
    local out=() r
    for r in $(seq 1 "$ROUNDS"); do
        if [ -n "${x[$r]:-}" ] && [ -n "${y[$r]:-}" ]; then out+=("$(calc "${x[$r]} / ${y[$r]}")"); else out+=("-"); fi
    done
    local IFS=,
    echo "${out[*]}" | sed 's/,/, /g'
}
RATIOS_AB="$(per_round A_BY_ROUND B_BY_ROUND)"
RATIOS_AC="$(per_round A_BY_ROUND C_BY_ROUND)"
if [ "$CONTROLS" = 1 ]; then
    MED_D="$(median "${D_BY_ROUND[@]}")"
    MED_E="$(median "${E_BY_ROUND[@]}")"
    RATIO_DB="$(ratio "$MED_D" "$MED_B")"
    RATIO_DE="$(ratio "$MED_D" "$MED_E")"
    RATIOS_DB="$(per_round D_BY_ROUND B_BY_ROUND)"
    RATIOS_DE="$(per_round D_BY_ROUND E_BY_ROUND)"
fi
runs() { local -n m="$1"; local out=() r; for r in $(seq 1 "$ROUNDS"); do out+=("${m[$r]:-FAILED}"); done; local IFS=,; echo "${out[*]}" | sed 's/,/, /g'; }

# Free the disk: the throughput phase's objects are no longer needed.
find "$S3_ROOT/$IM_BUCKET" "$S3_ROOT/$TUS_BUCKET" -mindepth 1 -delete 2>/dev/null || true

# ---- 2. peak RSS -------------------------------------------------------------------------
RSS_DONE=0
if [ "${SKIP_RSS:-0}" != 1 ]; then
    section "2. peak RSS: $RSS_UPLOADS concurrent tus uploads of $RSS_SIZE_MIB MiB (fresh servers)"
    RSS_FILES=()
    for n in $(seq 1 "$RSS_UPLOADS"); do
        gen_file "$WORK/rss$n.bin" "$RSS_SIZE_MIB"
        RSS_FILES+=("$WORK/rss$n.bin")
    done

    start_im
    IM_IDLE="$(vm "$IM_PID" VmHWM)"
    rc=0
    tus_upload rss-im "$IM_BASE/v1/uploads/" "$IM_KEY" "${RSS_FILES[@]}" || rc=$?
    IM_HWM="$(vm "$IM_PID" VmHWM)"
    IM_RSS_OK="$(jget "$WORK/rss-im.json" ok)"
    IM_RSS_MBPS="$(jget "$WORK/rss-im.json" mb_per_s)"
    IM_RSS_SECS="$(jget "$WORK/rss-im.json" seconds)"
    [ "$rc" = 0 ] || fail "interop-media: $((RSS_UPLOADS - ${IM_RSS_OK:-0})) of $RSS_UPLOADS concurrent uploads failed"
    # Every upload became a media of the right size.
    for n in $(seq 0 $((RSS_UPLOADS - 1))); do
        id="$(jget "$WORK/rss-im.json" "per_upload.$n.media_id")"
        file="$(jget "$WORK/rss-im.json" "per_upload.$n.file")"
        [ -n "$file" ] || continue
        if [ -z "$id" ]; then fail "interop-media: upload of $file finished without Media-Id"; continue; fi
        check_im_media "$id" "$file" || true
    done
    echo "interop-media: $IM_RSS_OK/$RSS_UPLOADS ok, $IM_RSS_MBPS MB/s aggregate in $IM_RSS_SECS s; VmHWM $IM_HWM MiB (idle $IM_IDLE MiB)"
    IM_WARN_2="$(im_log_problems)"
    show_im_log
    stop_im
    find "$S3_ROOT/$IM_BUCKET" -mindepth 1 -delete 2>/dev/null || true

    if [ "$CONTROLS" = 1 ]; then
        # Control: the same files as single POST /v1/media uploads, all at once, on a fresh
        # process (curl -T streams the file instead of loading it, like the tus client).
        start_im
        POST_IDLE="$(vm "$IM_PID" VmHWM)"
        cpids=()
        t0="$(date +%s.%N)"
        for n in $(seq 1 "$RSS_UPLOADS"); do
            f="$WORK/rss$n.bin"
            timeout -k 5 3600 curl -sS -o "$WORK/rss-post$n.json" -w '%{http_code}\n' -X POST \
                "$IM_BASE/v1/media" -H "Authorization: Bearer $IM_KEY" -H "X-Media-Kind: document" \
                -H "X-Media-Format: opaque" -H "X-Media-Sha256: $(cat "$f.sha256")" \
                -T "$f" >"$WORK/rss-post$n.code" 2>&1 &
            cpids+=($!)
        done
        for p in "${cpids[@]}"; do wait "$p" || true; done
        POST_SECS="$(calc3 "$(date +%s.%N) - $t0")"
        POST_HWM="$(vm "$IM_PID" VmHWM)"
        POST_OK=0
        for n in $(seq 1 "$RSS_UPLOADS"); do
            if [ "$(cat "$WORK/rss-post$n.code")" = 201 ] \
                && [ "$(jget "$WORK/rss-post$n.json" size)" = "$(stat -c %s "$WORK/rss$n.bin")" ]; then
                POST_OK=$((POST_OK + 1))
            else
                fail "control POST of rss$n.bin: $(cat "$WORK/rss-post$n.code") $(head -c 300 "$WORK/rss-post$n.json" 2>/dev/null)"
            fi
        done
        POST_MBPS="$(calc "$RSS_UPLOADS * $RSS_SIZE_MIB * 1048576 / 1e6 / $POST_SECS")"
        echo "interop-media POST control: $POST_OK/$RSS_UPLOADS ok, $POST_MBPS MB/s aggregate in $POST_SECS s; VmHWM $POST_HWM MiB (idle $POST_IDLE MiB)"
        IM_WARN_3="$(im_log_problems)"
        show_im_log
        stop_im
        find "$S3_ROOT/$IM_BUCKET" -mindepth 1 -delete 2>/dev/null || true
    fi

    start_tus
    TUS_IDLE="$(vm "$TUS_PID" VmHWM)"
    rc=0
    tus_upload rss-tus "$TUS_BASE/files/" "" "${RSS_FILES[@]}" || rc=$?
    TUS_HWM="$(vm "$TUS_PID" VmHWM)"
    TUS_RSS_OK="$(jget "$WORK/rss-tus.json" ok)"
    TUS_RSS_MBPS="$(jget "$WORK/rss-tus.json" mb_per_s)"
    TUS_RSS_SECS="$(jget "$WORK/rss-tus.json" seconds)"
    [ "$rc" = 0 ] || fail "@tus/server: $((RSS_UPLOADS - ${TUS_RSS_OK:-0})) of $RSS_UPLOADS concurrent uploads failed"
    echo "@tus/server: $TUS_RSS_OK/$RSS_UPLOADS ok, $TUS_RSS_MBPS MB/s aggregate in $TUS_RSS_SECS s; VmHWM $TUS_HWM MiB (idle $TUS_IDLE MiB)"
    show_tus_log
    stop_tus
    find "$S3_ROOT/$TUS_BUCKET" -mindepth 1 -delete 2>/dev/null || true
    rm -f "${RSS_FILES[@]}" "${RSS_FILES[@]/%/.sha256}"
    RSS_DONE=1
fi
S3_HWM="$(vm "$S3_PID" VmHWM)"

# ---- summary -----------------------------------------------------------------------------
section "summary"
echo
echo "Throughput, one upload of $SIZE_MIB MiB at a time, $ROUNDS rounds (MB = 10^6 bytes; median, then every round):"
echo
echo "| upload | median MB/s | rounds (MB/s) |"
echo "|---|---:|---|"
echo "| (a) interop-media tus 1.0 (tus-js-client, 1 PATCH) | $MED_A | $(runs A_BY_ROUND) |"
echo "| (b) interop-media \`POST /v1/media\` (curl) | $MED_B | $(runs B_BY_ROUND) |"
echo "| (c) @tus/server $(pkgver @tus/server) + @tus/s3-store $(pkgver @tus/s3-store) (tus-js-client, 1 PATCH) | $MED_C | $(runs C_BY_ROUND) |"
echo "| **ratio (a)/(b)** | **$RATIO_AB** | per round: $RATIOS_AB |"
echo "| **ratio (a)/(c)** | **$RATIO_AC** | per round: $RATIOS_AC |"
if [ "$CONTROLS" = 1 ]; then
    echo "| (a') control: interop-media tus with curl (POST, then 1 PATCH) | $MED_D | $(runs D_BY_ROUND) |"
    echo "| (c') control: @tus/server with curl (POST, then 1 PATCH) | $MED_E | $(runs E_BY_ROUND) |"
    echo "| ratio (a')/(b) | $RATIO_DB | per round: $RATIOS_DB |"
    echo "| ratio (a')/(c') | $RATIO_DE | per round: $RATIOS_DE |"
fi
echo
if [ "$RSS_DONE" = 1 ]; then
    echo "Peak RSS, $RSS_UPLOADS concurrent tus uploads of distinct $RSS_SIZE_MIB MiB files, fresh process each:"
    echo
    echo "| server | VmHWM MiB | idle VmHWM MiB | uploads ok | aggregate MB/s | seconds |"
    echo "|---|---:|---:|---:|---:|---:|"
    echo "| interop-media (part 8 MiB, upload_concurrency 2) | $IM_HWM | $IM_IDLE | $IM_RSS_OK/$RSS_UPLOADS | $IM_RSS_MBPS | $IM_RSS_SECS |"
    echo "| @tus/server + @tus/s3-store (part 8 MiB) | $TUS_HWM | $TUS_IDLE | $TUS_RSS_OK/$RSS_UPLOADS | $TUS_RSS_MBPS | $TUS_RSS_SECS |"
    if [ "$CONTROLS" = 1 ]; then
        echo "| control: interop-media, the same files as $RSS_UPLOADS concurrent \`POST /v1/media\` (curl) | $POST_HWM | $POST_IDLE | $POST_OK/$RSS_UPLOADS | $POST_MBPS | $POST_SECS |"
    fi
    echo
fi
echo "Also: VmHWM after the throughput phase: interop-media $IM_HWM_1 MiB, @tus/server $TUS_HWM_1 MiB; s3s-fs over the whole run $S3_HWM MiB."
echo "interop-media warn/error log lines: throughput phase ${IM_WARN_1:-0}${IM_WARN_2:+, RSS phase $IM_WARN_2}${IM_WARN_3:+, RSS control $IM_WARN_3}. Failures: $FAILURES."
echo "$(nproc) cpus shared by client, servers and s3s-fs, all on loopback; $("$S3S_FS" --version); node $(node --version)."
echo "# full log: $LOG"
[ "$FAILURES" = 0 ]

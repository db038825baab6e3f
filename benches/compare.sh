#!/usr/bin/env bash
# One command that compares the service side by side with anchors on this machine and writes
# docs/BENCHMARKS.md (issue 9, item 5). Loopback only (127.0.0.1), every run bounded in time,
# everything it starts is stopped by pid on exit, temp dirs removed.
#
#   bash benches/compare.sh                        # build, measure all cases, write the report
#   DURATION=3s ROUNDS=3 SKIP_BUILD=1 bash benches/compare.sh
#   CASES="a b c" bash benches/compare.sh          # a subset (the others say "not measured")
#
# Cases (service vs anchor, the same load against each, ALTERNATING in every round; the order
# flips every other round so drift from other work on the machine hits both sides alike):
#   a. download 64 KiB via token        vs nginx secure_link              (req/s, wrk)
#   b. download 16 MiB via token        vs nginx secure_link              (MB/s, wrk)
#   c. tampered token -> 401            vs nginx wrong md5 -> 403         (req/s, wrk)
#   d. sealed upload 16 MiB, distinct blobs (load_client.py, UPLOAD_CONC connections), fresh
#      file store per run   vs a plain PUT of the same bytes to nginx (dav_methods PUT) into
#      the same file system (D_STORE)                                      (MB/s)
#   e. peak RSS (VmHWM) of a fresh service during 32 x 256 MiB and 8 x 1 GiB concurrent
#      uploads (no anchor; clients wait out 429/503 from upload admission and send again,
#      --retry-busy, so every upload ends stored; the retries are counted)
#   f. p99 of a 64 KiB download (wrk -c LAT_CONNS) while 8 x 256 MiB uploads run, vs alone
#   g. at-rest STREAM seal/open vs raw aes-gcm (cargo bench --bench at_rest, criterion), and
#      raw aes-gcm vs `openssl speed` (benches/openssl-speed.sh)
#
# Knobs: DURATION (5s) ROUNDS (3) THREADS (2) CONNS (32) UPLOAD_CONC (8) LAT_CONNS (4)
#        CASES ("a b c d e f g") SKIP_BUILD=1 BIN (…/release/interop-media under
#        CARGO_TARGET_DIR or ./target) OUT (docs/BENCHMARKS.md) DISK_DIR (parent of the
#        on-disk temp dir; default $TMPDIR) RAM_DIR (/dev/shm: the stores of cases e and f,
#        which write GiBs) D_STORE (ram|disk, default ram: where the service store of cases
#        a-d and nginx's folders live; both sides always share the same kind of store) RUST_LOG
# The load generator and the servers share the machine's cores: every figure is a ratio to an
# anchor measured in the same run, minutes apart at most.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HERE="$ROOT/benches"

DURATION="${DURATION:-5s}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-2}"
CONNS="${CONNS:-32}"
UPLOAD_CONC="${UPLOAD_CONC:-8}"
LAT_CONNS="${LAT_CONNS:-4}"
CASES="${CASES:-a b c d e f g}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${BIN:-$TARGET_DIR/release/interop-media}"
OUT="${OUT:-$ROOT/docs/BENCHMARKS.md}"
RAM_DIR="${RAM_DIR:-/dev/shm}"
DISK_DIR="${DISK_DIR:-${TMPDIR:-/tmp}}"
D_STORE="${D_STORE:-ram}"
ANCHOR_CONF="${ANCHOR_CONF:-$ROOT/../shared/reference/anchors/nginx-secure-link.conf}"
export RUST_LOG="${RUST_LOG:-warn}"
DUR_S="${DURATION%s}"
case "$DUR_S" in '' | *[!0-9]*) echo "DURATION must be whole seconds like 5s" >&2; exit 2 ;; esac
case "$ROUNDS" in '' | *[!0-9]* | 0) echo "ROUNDS must be a positive integer" >&2; exit 2 ;; esac
MIB=$((1024 * 1024))

WORK="$(mktemp -d -p "$DISK_DIR" interop-media-compare.XXXXXX)"
RAMWORK="$(mktemp -d -p "$RAM_DIR" interop-media-compare.XXXXXX)"
chmod 755 "$WORK" "$RAMWORK"           # nginx workers run as 'nobody' when started by root
case "$D_STORE" in
    ram) DWORK="$RAMWORK" ;;
    disk) DWORK="$WORK" ;;
    *) echo "D_STORE must be ram or disk" >&2; exit 2 ;;
esac
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
free_gib() { df -P -k "$1" | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }'; }
printf '{"case": "env", "disk_dir": "%s", "disk_free_gib": %s, "ram_dir": "%s", "ram_free_gib": %s, "d_store": "%s"}\n' \
    "$DISK_DIR" "$(free_gib "$WORK")" "$RAM_DIR" "$(free_gib "$RAMWORK")" "$D_STORE" >>"$RESULTS"
SVC_PID="" SVC_DIR="" NGX_PID="" PUT_PID="" BG_PID="" REPORTED="" CURRENT="setup"

# ---- processes ---------------------------------------------------------------------------
stop_pid() { # stop_pid PID NAME [SIGNAL]: signal, wait up to 10 s, then KILL
    local pid="$1" name="$2" sig="${3:-TERM}"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "# $name (pid $pid) still alive after 10 s; killing" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    echo "# $name (pid $pid) stopped"
}
stop_service() {
    stop_pid "$SVC_PID" service
    SVC_PID=""
    if [ -n "$SVC_DIR" ]; then rm -rf "$SVC_DIR" "$SVC_DIR.stdout" "$SVC_DIR.stderr"; SVC_DIR=""; fi
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$BG_PID" "upload client"
    stop_service
    stop_pid "$NGX_PID" "nginx secure_link" QUIT
    stop_pid "$PUT_PID" "nginx PUT" QUIT
    # A run that failed (not one that was interrupted) still reports what it measured; the
    # cases it did not reach say why. Cases with measurements keep them.
    if [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ -z "$REPORTED" ] && [ -s "$RESULTS" ] && [ -n "${LOG:-}" ]; then
        for c in a b c d e f g; do
            skip "$c" "the run failed with exit code $rc during case $CURRENT (see its log, $(basename "$LOG"))" || true
        done
        write_report || true
    fi
    rm -rf "$WORK" "$RAMWORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

write_report() {
    cp "$RESULTS" "$TARGET_DIR/bench/compare-results-$(date +%Y%m%d-%H%M%S).jsonl"
    python3 "$HERE/compare_report.py" report "$RESULTS" "$OUT" \
        --duration "$DURATION" --rounds "$ROUNDS" --threads "$THREADS" --conns "$CONNS" \
        --upload-conc "$UPLOAD_CONC" --lat-conns "$LAT_CONNS" --bin "$BIN" --d-store "$D_STORE" \
        --nginx "$("$NGINX" -v 2>&1 | sed 's/.*\///')" --wrk "$(wrk --version 2>&1 | head -n1 | awk '{print $2}')"
    echo "# wrote $OUT; log $LOG"
}
section() { printf '\n==== %s\n' "$*"; }
has_case() { case " $CASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
record() { printf '%s\n' "$1" >>"$RESULTS"; } # one JSON object per line
skip() { # skip CASE REASON
    record "$(python3 -c 'import json,sys; print(json.dumps({"case": sys.argv[1], "skipped": sys.argv[2]}))' "$1" "$2")"
    echo "# case $1 not measured: $2"
}
wrk_json() { python3 "$HERE/compare_report.py" wrk "$1"; }
# rec CASE SIDE ROUND KIND JSON: wrap a measurement
rec() { record "{\"case\": \"$1\", \"side\": \"$2\", \"round\": $3, \"tool\": \"$4\", \"m\": $5}"; }

# ---- tools -------------------------------------------------------------------------------
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ "${#need[@]}" -gt 0 ]; then
    echo "# installing: ${need[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
command -v python3 >/dev/null 2>&1 || { echo "compare.sh needs python3" >&2; exit 2; }
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

mkdir -p "$TARGET_DIR/bench"
LOG="$TARGET_DIR/bench/compare-$(date +%Y%m%d-%H%M%S).txt"
exec > >(tee -a "$LOG") 2>&1
echo "# interop-media vs anchors, $(date -u +%FT%TZ), $(nproc) cpus, $(uname -r)"
echo "# DURATION=$DURATION ROUNDS=$ROUNDS THREADS=$THREADS CONNS=$CONNS UPLOAD_CONC=$UPLOAD_CONC CASES='$CASES'"

# ---- build -------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    section "cargo build --release"
    cargo build --release
fi
[ -x "$BIN" ] || { echo "no binary at $BIN (build, or set BIN)" >&2; exit 1; }

# ---- service -----------------------------------------------------------------------------
start_service() { # start_service PARENT_DIR: fresh `serve --dev` with its data dir under PARENT
    SVC_DIR="$(mktemp -d -p "$1" data.XXXXXX)"
    local out="$SVC_DIR.stdout" err="$SVC_DIR.stderr" addr=""
    : >"$out"                # exists before the loop below reads it (the child opens it later)
    "$BIN" serve --dev --listen 127.0.0.1:0 --data-dir "$SVC_DIR" >"$out" 2>"$err" &
    SVC_PID=$!
    for _ in $(seq 300); do
        addr="$(sed -n 's/.*listening on \(http:\/\/\)\{0,1\}\([0-9.]*:[0-9]*\).*/\2/p' "$out" | head -n1)" || addr=""
        [ -n "$addr" ] && break
        kill -0 "$SVC_PID" 2>/dev/null || break
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
mint() { # mint SIZE -> token URL of a fresh distinct blob
    python3 "$HERE/load_client.py" mint --base "$BASE" --key "$KEY" --size "$1" --ttl 3600
}
vmhwm() { awk '$1 == "VmHWM:" { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }

# ---- nginx anchors -----------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGX="$DWORK/nginx"
mkdir -p "$NGX"/{logs,tmp,www/files,dav/put,dav/.tmp}
chmod -R 755 "$NGX"
chmod 777 "$NGX/dav/put" "$NGX/dav/.tmp"       # written by the workers
start_nginx() { # start_nginx CONF_FILE PIDFILE_NAME -> echoes master pid
    "$NGINX" -p "$NGX/" -e logs/error.log -c "$1" -t -q
    "$NGINX" -p "$NGX/" -e logs/error.log -c "$1"
    for _ in $(seq 50); do [ -s "$NGX/$2" ] && break; sleep 0.1; done
    cat "$NGX/$2"
}
sign() { # sign URI EXPIRES -> base64url(md5("EXPIRES" + URI + " secret")) without padding
    printf '%s%s %s' "$2" "$1" secret | openssl md5 -binary | openssl base64 | tr '+/' '-_' | tr -d '='
}
http_code() { curl -sS -o /dev/null -w '%{http_code}' "$@"; }

if has_case a || has_case b || has_case c || has_case d; then
    if ! "$NGINX" -V 2>&1 | grep -q -- '--with-http_secure_link_module'; then
        echo "# this nginx lacks secure_link" >&2
    elif [ ! -f "$ANCHOR_CONF" ]; then
        echo "# anchor config $ANCHOR_CONF missing" >&2
    else
        NGX_PORT="$(free_port)"
        sed "s/127\.0\.0\.1:18080/127.0.0.1:$NGX_PORT/" "$ANCHOR_CONF" >"$NGX/nginx.conf"
        head -c $((64 * 1024)) /dev/urandom >"$NGX/www/files/64k.bin"
        head -c $((16 * MIB)) /dev/urandom >"$NGX/www/files/16m.bin"
        chmod a+r "$NGX"/www/files/*
        NGX_PID="$(start_nginx "$NGX/nginx.conf" nginx.pid)"
        EXP=$(($(date +%s) + 3 * 3600))
        NBASE="http://127.0.0.1:$NGX_PORT"
        N64="$NBASE/files/64k.bin?md5=$(sign /files/64k.bin $EXP)&expires=$EXP"
        N16="$NBASE/files/16m.bin?md5=$(sign /files/16m.bin $EXP)&expires=$EXP"
        NBAD="$NBASE/files/64k.bin?md5=AAAAAAAAAAAAAAAAAAAAAA&expires=$EXP"
        echo "# nginx secure_link pid $NGX_PID on $NBASE: 64k $(http_code "$N64"), 16m $(http_code "$N16"), wrong md5 $(http_code "$NBAD")"
    fi
    if "$NGINX" -V 2>&1 | grep -q -- '--with-http_dav_module'; then
        PUT_PORT="$(free_port)"
        sed "s/LISTEN_PORT/$PUT_PORT/" "$HERE/nginx-put.conf" >"$NGX/nginx-put.conf"
        PUT_PID="$(start_nginx "$NGX/nginx-put.conf" nginx-put.pid)"
        PBASE="http://127.0.0.1:$PUT_PORT"
        echo "probe" >"$WORK/probe.txt"
        echo "# nginx PUT pid $PUT_PID on $PBASE: PUT $(http_code -T "$WORK/probe.txt" "$PBASE/put/probe.txt")"
        rm -f "$NGX/dav/put/probe.txt"
    fi
fi

run_wrk() { # run_wrk OUTFILE CONNS THREADS URL [more wrk args]
    local out="$1" c="$2" t="$3"; shift 3
    timeout -k 5 $((DUR_S + 60)) wrk -t"$t" -c"$c" -d"$DURATION" --latency "$@" >"$out" || true
    sed -n '/Requests\/sec/p;/^ *99%/p;/Non-2xx/p' "$out" | tr -s ' ' | paste -sd' ' -
}
order() { # order ROUND -> "service anchor" or "anchor service" (flips every other round)
    if [ $(($1 % 2)) = 1 ]; then echo "service anchor"; else echo "anchor service"; fi
}

# ---- a, b, c. downloads and rejections ---------------------------------------------------
CURRENT="a-c"
if has_case a || has_case b || has_case c; then
    if [ -z "$NGX_PID" ]; then
        for c in a b c; do has_case $c && skip $c "nginx secure_link anchor could not be started"; done
    else
        start_service "$DWORK"       # the same file system as nginx's files
        for r in $(seq "$ROUNDS"); do
            S64="$(mint $((64 * 1024)))"
            S16="$(mint $((16 * MIB)))"
            # Tamper with a character in the middle of the token (the last one may only carry
            # base64 padding bits); keep the first variant that is refused.
            tok="${S64##*/}" SBAD=""
            for pos in $((${#tok} / 2)) $((${#tok} / 3)) 5; do
                ch="${tok:$pos:1}"; [ "$ch" = A ] && rp=B || rp=A
                cand="${S64%/*}/${tok:0:$pos}$rp${tok:$((pos + 1))}"
                code="$(http_code "$cand")"
                if [ "$code" != 200 ]; then SBAD="$cand"; break; fi
            done
            echo "# round $r: service 64k $(http_code "$S64"), 16m $(http_code "$S16"), tampered ${code:-?}"
            for c in a b c; do
                has_case $c || continue
                for side in $(order "$r"); do
                    case "$c$side" in
                        aservice) url="$S64" ;; aanchor) url="$N64" ;;
                        bservice) url="$S16" ;; banchor) url="$N16" ;;
                        cservice) url="$SBAD" ;; canchor) url="$NBAD" ;;
                    esac
                    if [ -z "$url" ]; then echo "# no tampered token was refused" >&2; continue; fi
                    st="$(http_code "$url")"
                    echo "# $c round $r $side (HTTP $st): $(run_wrk "$WORK/w.txt" "$CONNS" "$THREADS" "$url")"
                    rec "$c" "$side" "$r" wrk "$(wrk_json "$WORK/w.txt" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["status"]=int(sys.argv[1]); print(json.dumps(d))' "$st")"
                done
            done
        done
        echo "# service VmHWM after downloads: $(vmhwm "$SVC_PID") MiB"
        stop_service
    fi
fi

# ---- d. sealed upload 16 MiB vs plain PUT --------------------------------------------------
CURRENT="d"
upload_run() { # upload_run CASE SIDE ROUND SIZE CONC [extra load_client args]: one timed run
    local c="$1" side="$2" r="$3" size="$4" conc="$5" line; shift 5
    line="$(timeout -k 5 $((DUR_S + 600)) python3 "$HERE/load_client.py" upload --base "$BASE" --key "$KEY" \
        --size "$size" --concurrency "$conc" "$@" | tee /dev/stderr | sed -n 's/^RESULT //p')" || true
    if [ -n "$line" ]; then rec "$c" "$side" "$r" load_client "$line"; else echo "# $c $side round $r: no result" >&2; fi
}
if has_case d; then
    if [ -z "$PUT_PID" ]; then
        skip d "nginx with the dav module (PUT anchor) could not be started"
    else
        for r in $(seq "$ROUNDS"); do
            for side in $(order "$r"); do
                section "d round $r: $side, 16 MiB x $UPLOAD_CONC connections, $DURATION"
                if [ "$side" = service ]; then
                    start_service "$DWORK"
                    upload_run d service "$r" $((16 * MIB)) "$UPLOAD_CONC" --duration "$DUR_S"
                    stop_service
                else
                    BASE="$PBASE" KEY=unused upload_run d anchor "$r" $((16 * MIB)) "$UPLOAD_CONC" \
                        --duration "$DUR_S" --plain-put /put/
                    find "$NGX/dav/put" -type f -delete
                fi
            done
        done
    fi
fi

# The S3 variants of d need an S3 server process next to the service and its anchor.
skip d-s3 "not implemented in compare.sh yet: needs a stand-alone S3 server (s3s-fs exists here only embedded in the test harness; \`cargo install s3s-fs@0.14.1 --features binary\` is a separate 2-minute build) started for both sides"

# ---- e. peak RSS under big concurrent uploads ---------------------------------------------
CURRENT="e"
if has_case e; then
    for spec in "32:256" "8:1024"; do
        n="${spec%%:*}" mib="${spec#*:}"
        section "e: VmHWM of a fresh service during $n concurrent uploads of $mib MiB (store in $RAM_DIR)"
        start_service "$RAMWORK"
        idle="$(vmhwm "$SVC_PID")"
        # Clients do what a gateway should when upload admission says "no room yet" (429/503):
        # wait Retry-After and send again, so every upload ends stored.
        upload_run "e${n}x${mib}" service 1 $((mib * MIB)) "$n" --count "$n" --watch-pid "$SVC_PID" \
            --retry-busy 20
        echo "# idle VmHWM $idle MiB, after $(vmhwm "$SVC_PID") MiB"
        record "{\"case\": \"e${n}x${mib}\", \"idle_vmhwm_mib\": ${idle:-0}}"
        stop_service
    done
fi

# ---- f. download p99 while big uploads run -------------------------------------------------
CURRENT="f"
if has_case f; then
    for r in $(seq "$ROUNDS"); do
        start_service "$RAMWORK"
        U="$(mint $((64 * 1024)))"
        for side in $(order "$r"); do
            if [ "$side" = service ]; then # "service" = under load
                python3 "$HERE/load_client.py" upload --base "$BASE" --key "$KEY" --size $((256 * MIB)) \
                    --concurrency 8 --duration $((DUR_S + 1)) >"$WORK/bg.txt" 2>&1 &
                BG_PID=$!
                sleep 1
                echo "# f round $r under 8x256 MiB uploads: $(run_wrk "$WORK/w.txt" "$LAT_CONNS" 1 "$U")"
                rec f loaded "$r" wrk "$(wrk_json "$WORK/w.txt")"
                wait "$BG_PID" 2>/dev/null || true   # load_client stops at its --duration
                BG_PID=""
                bg="$(sed -n 's/^RESULT //p' "$WORK/bg.txt")"
                [ -n "$bg" ] && rec f background "$r" load_client "$bg"
            else
                echo "# f round $r alone: $(run_wrk "$WORK/w.txt" "$LAT_CONNS" 1 "$U")"
                rec f alone "$r" wrk "$(wrk_json "$WORK/w.txt")"
            fi
        done
        stop_service
    done
fi

# ---- g. at-rest crypto vs raw aes-gcm vs openssl -------------------------------------------
CURRENT="g"
if has_case g; then
    section "g: cargo bench --bench at_rest (criterion) and benches/openssl-speed.sh"
    export CRITERION_HOME="$WORK/criterion"
    if timeout -k 10 1800 cargo bench --bench at_rest -- \
        '^(seal|open)/(64KiB|16MiB)$|^raw_aes_gcm/' >"$WORK/criterion.txt" 2>&1; then
        grep -E '^(seal|open|raw_aes_gcm)/|thrpt' "$WORK/criterion.txt" || true
        record "$(python3 "$HERE/compare_report.py" criterion "$CRITERION_HOME")"
    else
        tail -n 30 "$WORK/criterion.txt"
        skip g "cargo bench --bench at_rest failed (its output is in the run's log)"
    fi
    if SECONDS_PER_SIZE=2 RUNS=1 ALGOS=aes-256-gcm bash "$HERE/openssl-speed.sh" | tee "$WORK/openssl.txt"; then
        mbs="$(awk '/^best aes-256-gcm/ { print $4 }' "$WORK/openssl.txt")"
        [ -n "$mbs" ] && record "{\"case\": \"g-openssl\", \"gcm_16k_mbps\": $mbs}"
    fi
fi

# ---- report --------------------------------------------------------------------------------
for c in a b c d e f g; do has_case $c || skip $c "not selected in CASES for this run"; done
section "report"
write_report
REPORTED=1

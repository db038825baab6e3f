#!/usr/bin/env bash
# schemathesis against the real binary's /openapi.json (issue 13): no 5xx, responses that
# match the schema and its content types, and every error a problem document with a `code`
# (hooks.py). Starts `interop-media serve --dev` on a free loopback port with a throw-away
# data dir and the dev partner key; bounded by SCHEMATHESIS_MAX_EXAMPLES per operation and
# SCHEMATHESIS_TIMEOUT seconds overall.
#   bash tests/schemathesis/run.sh        (CI: called by .ci/run after cargo test)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

VERSION=4.32.5
VENV="$PWD/target/tools/schemathesis-$VERSION"
if [ ! -x "$VENV/bin/st" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "schemathesis==$VERSION"
fi

cargo build -q --bin interop-media
BIN="$PWD/target/debug/interop-media"
WORK=$(mktemp -d)
SVC_PID=""
cleanup() {
    if [ -n "$SVC_PID" ]; then kill "$SVC_PID" 2>/dev/null || true; wait "$SVC_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# A body shorter than its declared length is cut after 5 s idle (408), before the client gives up.
INTEROP_MEDIA_SERVER__BODY_IDLE_TIMEOUT_S=5 "$BIN" serve --dev --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/out" 2>"$WORK/err" &
SVC_PID=$!
for _ in $(seq 1 300); do
    grep -q '^listening on ' "$WORK/out" 2>/dev/null && break
    kill -0 "$SVC_PID" 2>/dev/null || { cat "$WORK/err" >&2; exit 1; }
    sleep 0.1
done
ADDR=$(sed -n 's/^listening on //p' "$WORK/out" | head -n1)
[ -n "$ADDR" ] || { echo "service did not start" >&2; cat "$WORK/err" >&2; exit 1; }
KEY=$(cat "$WORK/data/dev-partner-key")

export PYTHONPATH="$PWD/tests/schemathesis${PYTHONPATH:+:$PYTHONPATH}"
export SCHEMATHESIS_HOOKS=hooks
set +e
timeout -k 10 "${SCHEMATHESIS_TIMEOUT:-150}" "$VENV/bin/st" run "http://$ADDR/openapi.json" \
    --url "http://$ADDR" \
    -H "Authorization: Bearer $KEY" \
    --checks not_a_server_error,response_schema_conformance,content_type_conformance,problem_json_for_errors \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
    --request-timeout 20 \
    --no-color
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
    echo "schemathesis failed (exit $rc); service log tail:" >&2
    tail -n 40 "$WORK/err" >&2
fi
exit "$rc"

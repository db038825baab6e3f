#!/usr/bin/env bash
# Build the container image with buildah and check it, without a Docker engine or a registry.
#
#   bash docker/build-and-check.sh                 # the real multi-stage docker/Dockerfile
#   bash docker/build-and-check.sh --host-binary   # faster: a host `cargo build --release`
#                                                  # binary into the same runtime stage
#                                                  # (BINARY=path: that binary instead)
#
# Needs (Debian): buildah, debootstrap; curl, python3, ImageMagick (`convert`) for the checks;
# root. Slow (a release build; ~1-2 GB of layers): not part of `cargo test` or `.ci/run`.
#
# 1. Base images are made locally, since no registry is reachable: `debootstrap --variant=
#    minbase bookworm` imported as debian:bookworm-slim, and that plus gcc/make and this
#    machine's Rust toolchain as rust:1.95-bookworm (the names docker/Dockerfile uses).
#    Kept between runs; delete them with `buildah rmi` to rebuild.
# 2. `buildah bud --isolation chroot` builds docker/Dockerfile (storage driver vfs when
#    overlay is not available).
# 3. The image is checked: its configured user is non-root and its HEALTHCHECK is the
#    healthcheck subcommand; the service starts inside it (`buildah run --isolation chroot`)
#    from environment variables and *_FILE secrets only, as uid 10001; the HEALTHCHECK
#    command passes; a seal-for-me upload starts a media worker inside, whose seccomp filter
#    is verified in /proc; an upload -> token -> download round trip returns the same bytes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
MODE=multi-stage
[ "${1:-}" = "--host-binary" ] && MODE=host-binary
IMAGE="${IMAGE:-localhost/interop-media:check}"
WORK="${WORK:-/var/tmp/interop-media-build}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$WORK"
log() { printf '\n==== %s  [t=%ss]\n' "$*" "$SECONDS"; }
fail() { echo "CHECK FAILED: $*" >&2; exit 1; }

for t in buildah debootstrap curl python3 convert; do
    command -v "$t" >/dev/null || fail "$t is not installed (apt-get install buildah debootstrap curl imagemagick)"
done
# overlay needs kernel support inside this machine; vfs always works (copies layers whole).
if [ -z "${STORAGE_DRIVER:-}" ]; then
    if buildah --storage-driver overlay images >/dev/null 2>&1; then
        export STORAGE_DRIVER=overlay
    else
        export STORAGE_DRIVER=vfs
    fi
fi
echo "buildah $(buildah --version | cut -d' ' -f3), storage driver $STORAGE_DRIVER, mode $MODE"
B() { buildah --storage-driver "$STORAGE_DRIVER" "$@"; }

have_image() { B inspect --type image "$1" >/dev/null 2>&1; }

log "base image debian:bookworm-slim (debootstrap, local)"
if ! have_image docker.io/library/debian:bookworm-slim; then
    rootfs="$WORK/rootfs"
    if [ ! -x "$rootfs/bin/sh" ]; then
        rm -rf "$rootfs"
        debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR"
    fi
    c=$(B from scratch)
    B copy "$c" "$rootfs/" /
    B config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$c"
    B commit --rm "$c" docker.io/library/debian:bookworm-slim
fi
echo "ok"

if [ "$MODE" = multi-stage ]; then
    log "build image rust:1.95-bookworm (debian base + gcc + this machine's toolchain)"
    if ! have_image docker.io/library/rust:1.95-bookworm; then
        toolchain="$(rustc --print sysroot)"
        c=$(B from --pull-never docker.io/library/debian:bookworm-slim)
        B run --isolation chroot "$c" -- sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev make binutils ca-certificates && rm -rf /var/lib/apt/lists/*'
        # A machine behind a TLS-inspecting egress proxy trusts its CA through
        # /usr/local/share/ca-certificates: the build stage needs it for crates.io. (Only this
        # local build image gets it; the runtime image installs Debian's ca-certificates.)
        if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
            B copy "$c" /usr/local/share/ca-certificates/ /usr/local/share/ca-certificates/
            B run --isolation chroot "$c" -- update-ca-certificates
        fi
        B copy "$c" "$toolchain" /usr/local/rust
        B config --env PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --env CARGO_HOME=/usr/local/cargo "$c"
        B commit --rm "$c" docker.io/library/rust:1.95-bookworm
    fi
    echo "ok"
    DOCKERFILE=docker/Dockerfile
    CONTEXT="$ROOT"
    # The crates.io downloads of the dependency layer are cached between runs.
    mkdir -p "$WORK/cargo-registry"
    EXTRA=(--volume "$WORK/cargo-registry:/usr/local/cargo/registry")
else
    # BINARY=path uses an already built binary (e.g. to check the script quickly).
    if [ -z "${BINARY:-}" ]; then
        log "host release build"
        cargo build --release --locked
        BINARY=target/release/interop-media
    fi
    CONTEXT="$WORK/context"
    rm -rf "$CONTEXT" && mkdir -p "$CONTEXT"
    install -m 0755 -s "$BINARY" "$CONTEXT/interop-media"
    # The same runtime stage, its build stage replaced by the host binary.
    { printf 'FROM scratch AS build\nCOPY interop-media /usr/local/bin/interop-media\n\n'
      sed -n '/^# ---- runtime/,$p' docker/Dockerfile; } > "$CONTEXT/Dockerfile"
    DOCKERFILE="$CONTEXT/Dockerfile"
    EXTRA=()
fi

log "buildah bud --isolation chroot ($DOCKERFILE)"
# Docker format: the OCI image config has no HEALTHCHECK, and buildah drops it there.
B bud --isolation chroot --format docker --pull-never --layers "${EXTRA[@]}" \
    --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -f "$DOCKERFILE" -t "$IMAGE" "$CONTEXT"
B images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"

log "check: configuration (user, healthcheck, labels, entrypoint)"
cfg="$(B inspect --type image "$IMAGE")"
python3 - "$cfg" <<'PY' || fail "image configuration"
import json, sys
c = json.loads(sys.argv[1])["Docker"]["config"]
user = c.get("User", "")
assert user and user.split(":")[0] not in ("", "0", "root"), f"runs as {user!r}"
hc = (c.get("Healthcheck") or {}).get("Test")
assert hc == ["CMD", "interop-media", "healthcheck"], f"healthcheck {hc}"
labels = c.get("Labels") or {}
for k in ("org.opencontainers.image.title", "org.opencontainers.image.version",
          "org.opencontainers.image.revision", "org.opencontainers.image.licenses"):
    assert k in labels, f"label {k} missing"
assert c.get("Entrypoint") == ["interop-media"], c.get("Entrypoint")
print(f"user {user}; HEALTHCHECK {' '.join(hc[1:])}; {len(labels)} labels; entrypoint {c['Entrypoint']}")
PY

log "check: the service starts from env + *_FILE secrets only"
run_dir="$WORK/run"
rm -rf "$run_dir" && mkdir -p "$run_dir/secrets"
keygen="$(B run --isolation chroot "$(B from --pull-never "$IMAGE")" -- interop-media keygen 2>/dev/null || true)"
B rm --all >/dev/null 2>&1 || true
[ -n "$keygen" ] || fail "keygen inside the image"
keys=($(printf '%s\n' "$keygen" | sed -n 's/^key = "\(.*\)"$/\1/p'))
partner_key="$(printf '%s\n' "$keygen" | sed -n 's/^#   \(imk_.*\)$/\1/p')"
partner_hash="$(printf '%s\n' "$keygen" | sed -n 's/^key_sha256 = "\(.*\)"$/\1/p')"
printf '%s\n' "${keys[0]}" > "$run_dir/secrets/master-k1"
printf '%s\n' "${keys[1]}" > "$run_dir/secrets/token-t1"
chmod 0444 "$run_dir/secrets/"*
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ctr=$(B from --pull-never "$IMAGE")
cleanup() {
    # buildah does not pass the signal on to the service inside: stop that one by its pid.
    [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null || true
    [ -n "${svc_pid:-}" ] && kill "$svc_pid" 2>/dev/null || true
    [ -n "${svc_pid:-}" ] && wait "$svc_pid" 2>/dev/null || true
    B rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
envs=(
    --env INTEROP_MEDIA_SERVER__LISTEN=127.0.0.1:$port
    --env INTEROP_MEDIA_SERVER__METRICS_LISTEN=127.0.0.1:$mport
    --env INTEROP_MEDIA_SERVER__PUBLIC_URL=http://127.0.0.1:$port
    --env INTEROP_MEDIA_KEYS__ACTIVE=k1
    --env INTEROP_MEDIA_KEYS__MASTER__K1__KEY_FILE=/run/secrets/master-k1
    --env INTEROP_MEDIA_TOKENS__ACTIVE=t1
    --env INTEROP_MEDIA_TOKENS__KEYS__T1__KEY_FILE=/run/secrets/token-t1
    --env INTEROP_MEDIA_PARTNERS__CHECK__KEY_SHA256=$partner_hash
    --env "INTEROP_MEDIA_PARTNERS__CHECK__SCOPES=[upload,token,delete,seal]"
    # what a Kubernetes Service named interop-media injects
    --env INTEROP_MEDIA_PORT=tcp://10.96.0.12:8080
)
B run --isolation chroot -v "$run_dir/secrets:/run/secrets:ro" "${envs[@]}" "$ctr" -- \
    interop-media serve > "$run_dir/stdout" 2> "$run_dir/stderr" &
svc_pid=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$run_dir/stdout" 2>/dev/null && break
    sleep 0.2
done
grep -q "listening on" "$run_dir/stdout" || { cat "$run_dir/stderr"; fail "service did not start"; }
echo "listening on 127.0.0.1:$port (metrics :$mport)"
spid=$(pgrep -f "interop-media serve" | while read -r p; do
    [ "$(readlink /proc/$p/exe 2>/dev/null | xargs -r basename)" = interop-media ] && echo "$p"; done | sed -n 1p)
uid=$(awk '/^Uid:/ {print $2}' "/proc/$spid/status")
[ "$uid" = 10001 ] || fail "service runs as uid $uid"
echo "service pid $spid runs as uid $uid"
grep -q "variables.*INTEROP_MEDIA_PORT" "$run_dir/stderr" || fail "no warning naming the service-link variable"
echo "service-link variable INTEROP_MEDIA_PORT ignored with a warning"

log "check: HEALTHCHECK command (liveness) passes"
B run --isolation chroot --env INTEROP_MEDIA_SERVER__LISTEN=127.0.0.1:$port "$ctr" -- interop-media healthcheck \
    || fail "healthcheck"
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || fail "/readyz"
# Read whole before grepping: with pipefail, `curl | grep -q` fails when grep stops reading
# early and curl gets SIGPIPE.
metrics=$(curl -sf "http://127.0.0.1:$mport/metrics") || fail "/metrics on its own port"
grep -q '^interop_media_build_info' <<<"$metrics" || fail "/metrics on its own port"
echo "readyz 200, /metrics on :$mport"

log "check: seal-for-me starts a caged worker inside the image (seccomp)"
convert -size 64x48 gradient:red-blue "$run_dir/photo.jpg"
code=$(curl -s -o "$run_dir/seal.json" -w '%{http_code}' -X POST "http://127.0.0.1:$port/v1/media?seal=whatsapp" \
    -H "Authorization: Bearer $partner_key" -H 'X-Media-Kind: image' --data-binary @"$run_dir/photo.jpg")
[ "$code" = 201 ] || { cat "$run_dir/seal.json"; fail "seal-for-me upload answered $code"; }
wpid=$(pgrep -f "interop-media worker" | sed -n 1p)
[ -n "$wpid" ] || fail "no media worker process"
seccomp=$(awk '/^Seccomp:/ {print $2}' "/proc/$wpid/status")
wuid=$(awk '/^Uid:/ {print $2}' "/proc/$wpid/status")
[ "$seccomp" = 2 ] || fail "worker seccomp mode $seccomp (2 = filter)"
echo "worker pid $wpid: uid $wuid, Seccomp $seccomp (filter); upload 201"
metrics=$(curl -sf "http://127.0.0.1:$mport/metrics") || fail "/metrics after the upload"
grep -q '^interop_media_media_queue_wait_seconds_count{outcome="acquired"} 1' <<<"$metrics" \
    || fail "seal pipeline metrics"

log "check: upload -> token -> download round trip"
head -c 300000 /dev/urandom > "$run_dir/blob"
sha=$(sha256sum "$run_dir/blob" | cut -d' ' -f1)
id=$(curl -sf -X POST "http://127.0.0.1:$port/v1/media" -H "Authorization: Bearer $partner_key" \
    -H 'X-Media-Kind: document' -H 'X-Media-Format: opaque' -H "X-Media-Sha256: $sha" \
    --data-binary @"$run_dir/blob" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
url=$(curl -sf -X POST "http://127.0.0.1:$port/v1/media/$id/tokens" -H "Authorization: Bearer $partner_key" \
    -H 'Content-Type: application/json' -d '{"audience":"check"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')
curl -sf "$url" -o "$run_dir/back"
cmp "$run_dir/blob" "$run_dir/back" || fail "downloaded bytes differ"
echo "media $id: 300000 bytes up, token, same bytes down"

log "check: graceful stop"
kill -TERM "$spid"
wait "$svc_pid" && echo "service exited 0" || fail "service exit status $?"
svc_pid=""
if grep -q "$partner_key" "$run_dir/stderr" "$run_dir/stdout"; then fail "partner key in the logs"; fi
echo
echo "build-and-check: image $IMAGE ($MODE) passed every check"

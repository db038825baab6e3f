#!/usr/bin/env bash
# Write the secrets docker/compose.yaml mounts: a master key, a token key, an S3 secret and a
# partner API key (docker/secrets/partner-key) with its hash (docker/secrets/partner.env,
# `source` it before `docker compose up`). Needs a built interop-media binary on PATH or
# target/release. Keeps existing files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
BIN="$(command -v interop-media || echo ../target/release/interop-media)"
mkdir -p secrets && chmod 700 secrets
[ -f secrets/master-k1 ] && { echo "docker/secrets exists; keeping it"; exit 0; }
out="$("$BIN" keygen)"
keys=($(printf '%s\n' "$out" | sed -n 's/^key = "\(.*\)"$/\1/p'))
printf '%s\n' "${keys[0]}" > secrets/master-k1
printf '%s\n' "${keys[1]}" > secrets/token-t1
printf '%s\n' "$out" | sed -n 's/^#   \(imk_.*\)$/\1/p' > secrets/partner-key
printf 'export PARTNER_KEY_SHA256=%s\n' "$(printf '%s\n' "$out" | sed -n 's/^key_sha256 = "\(.*\)"$/\1/p')" > secrets/partner.env
head -c 24 /dev/urandom | base64 > secrets/s3-secret
chmod 600 secrets/*
echo "wrote docker/secrets/; now: source docker/secrets/partner.env"

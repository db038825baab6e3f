#!/usr/bin/env bash
# Installs the independent peers used by tests/interop_formats.rs (idempotent).
#   @whiskeysockets/baileys      WhatsApp media format (encryptedStream, getMediaKeys, downloadEncryptedContent)
#   @signalapp/mock-server       Signal's own attachment encryptor (src/crypto.js encryptAttachment)
#   @signalapp/libsignal-client  Signal's incremental MAC (ships linux-x64 prebuilds)
#   tus-js-client                the reference tus 1.0 client (tests/tus.rs, driven by tus.js)
# Every Baileys release depends on a git-hosted `libsignal`; package.json `overrides` maps it to the
# registry package libsignal@2.0.1, and `--ignore-scripts` skips install scripts that would fetch more.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null || { echo "setup.sh: node is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "setup.sh: npm is not installed" >&2; exit 1; }
if [ -d node_modules/@whiskeysockets/baileys ] && [ -d node_modules/@signalapp/libsignal-client ] \
   && [ -d node_modules/@signalapp/mock-server ] && [ -d node_modules/tus-js-client ] \
   && [ "${1:-}" != "--force" ]; then
  exit 0
fi
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

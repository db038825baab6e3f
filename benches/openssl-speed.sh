#!/usr/bin/env bash
# OpenSSL reference figures for the at-rest benches: single-core AES-256-GCM and
# AES-256-CBC (the WhatsApp/Signal attachment cipher), 16 KiB blocks, in decimal MB/s
# (10^6 bytes/s, the unit `cargo bench --bench at_rest` reports with BytesDecimal).
#
# Usage: bash benches/openssl-speed.sh
#   SECONDS_PER_SIZE=3   seconds per block size (openssl speed -seconds)
#   RUNS=1               repeat each algorithm and print every run (the machine is noisy)
#   ALGOS="aes-256-gcm aes-256-cbc"
#
# Output: one line per run, "<algo> 16KiB <MB/s> MB/s", then a summary line per algorithm
# with the best run. Machine-readable mode (-mr) is parsed, so the numbers are exact bytes/s
# rather than the rounded 'k' columns.
set -euo pipefail

secs="${SECONDS_PER_SIZE:-3}"
runs="${RUNS:-1}"
algos="${ALGOS:-aes-256-gcm aes-256-cbc}"

command -v openssl >/dev/null || { echo "openssl not found (apt-get install openssl)" >&2; exit 1; }
echo "# $(openssl version)"
echo "# single core, -seconds ${secs}, 16384-byte blocks, MB/s = 10^6 bytes/s; load: $(cut -d' ' -f1-3 /proc/loadavg)"

for algo in $algos; do
    best=""
    for _ in $(seq "$runs"); do
        out="$(openssl speed -evp "$algo" -seconds "$secs" -mr 2>/dev/null)"
        # +H:16:64:256:1024:8192:16384   +F:<n>:<NAME>:<bytes/s per size>...
        mbs="$(awk -F: '
            /^\+H:/ { for (i = 2; i <= NF; i++) if ($i == 16384) col = i }
            /^\+F:/ { if (col) printf "%.0f\n", $(col + 2) / 1e6 }
        ' <<<"$out")"
        if [[ -z "$mbs" ]]; then
            echo "could not parse openssl speed output for $algo" >&2
            exit 1
        fi
        echo "$algo 16KiB $mbs MB/s"
        if [[ -z "$best" || "$mbs" -gt "$best" ]]; then best="$mbs"; fi
    done
    echo "best $algo 16KiB $best MB/s"
done

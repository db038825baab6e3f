#!/usr/bin/env bash
# A fresh machine of this project's kind has the Rust toolchain, gcc, python3, node and npm:
# no cmake, nasm, pkg-config, protoc or libclang. Two checks keep the build that way:
#
#   bash .ci/fresh-machine.sh scan        # fast (cargo metadata): fail if a crate that
#                                         # drives one of those tools enters the dependency
#                                         # graph, unless allowed below with a reason
#   eval "$(bash .ci/fresh-machine.sh hide DIR)"   # put failing stand-ins for the tools first
#                                         # on PATH (they log to DIR/calls.log and exit 127,
#                                         # as "command not found"), so the build that
#                                         # follows runs every build script as a fresh
#                                         # machine would; `.ci/run` builds and tests under it
#   bash .ci/fresh-machine.sh report DIR  # list what build scripts tried to run
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS="cmake nasm pkg-config pkgconf protoc clang llvm-config"

case "${1:-}" in
scan)
    cargo metadata --format-version 1 --locked --all-features > "${TMPDIR:-/tmp}/fresh-metadata.json"
    python3 - "${TMPDIR:-/tmp}/fresh-metadata.json" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
# Crates whose job is to run a tool a fresh machine lacks.
DENY = {
    "cmake": "cmake", "pkg-config": "pkg-config", "system-deps": "pkg-config",
    "bindgen": "libclang", "clang-sys": "libclang", "prost-build": "protoc",
    "protobuf-src": "cmake", "protoc-bin-vendored": None, "nasm-rs": "nasm",
    "autotools": "autoconf/make", "vcpkg": "vcpkg", "metadeps": "pkg-config",
}
# Dependents allowed to carry one, with the reason; the PATH stand-ins of `hide` prove it.
ALLOW = {
    ("aws-lc-sys", "cmake"): "builds with the cc crate on Linux x86_64/aarch64; cmake only for FIPS or AWS_LC_SYS_CMAKE_BUILDER=1",
    ("aws-lc-sys", "pkg-config"): "only with AWS_LC_SYS_USE_SYSTEM=1 (link a system aws-lc)",
    ("openh264-sys2", "nasm-rs"): "nasm only adds assembly: when it is missing or fails, the build script compiles the C++ alone (build.rs: 'Failed to compile NASM files, not using any assembly')",
}
names = {p["id"]: p["name"] for p in meta["packages"]}
bad = []
for node in meta["resolve"]["nodes"]:
    parent = names[node["id"]]
    for dep in node["deps"]:
        child = names[dep["pkg"]]
        if child in DENY and DENY[child] is not None:
            kinds = ",".join(sorted({k["kind"] or "normal" for k in dep["dep_kinds"]}))
            why = ALLOW.get((parent, child))
            if why:
                print(f"allowed: {parent} -> {child} ({kinds}): {why}")
            else:
                bad.append(f"{parent} -> {child} ({kinds}) needs {DENY[child]}")
if bad:
    print("A dependency needs a tool a fresh machine (Rust, gcc, python3, node, npm) lacks:")
    print("\n".join("  " + b for b in bad))
    print("Choose another crate or feature, or (if it only falls back to the tool) add it to ALLOW in .ci/fresh-machine.sh with the reason.")
    sys.exit(1)
print(f"fresh-machine scan: {len(names)} packages, no unexpected tool-driving build dependency")
PY
    ;;
hide)
    dir="${2:?usage: hide DIR}"
    mkdir -p "$dir"
    : > "$dir/calls.log"
    for t in $TOOLS; do
        printf '#!/bin/sh\necho "%s $*" >> "%s/calls.log"\necho "%s: not on a fresh machine (hidden by .ci/fresh-machine.sh)" >&2\nexit 127\n' \
            "$t" "$dir" "$t" > "$dir/$t"
        chmod +x "$dir/$t"
    done
    echo "export PATH=\"$dir:\$PATH\""
    ;;
report)
    dir="${2:?usage: report DIR}"
    if [ -s "$dir/calls.log" ]; then
        echo "build scripts tried these hidden tools (and coped without them):"
        sort "$dir/calls.log" | uniq -c
    else
        echo "no build script tried cmake, nasm, pkg-config, protoc or libclang"
    fi
    ;;
*)
    echo "usage: $0 scan | hide DIR | report DIR" >&2
    exit 2
    ;;
esac

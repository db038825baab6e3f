#!/usr/bin/env python3
"""Helpers of benches/compare.sh (Python 3 stdlib only).

  wrk FILE                 parse wrk --latency output, print one JSON object
  criterion DIR            read criterion estimates of the at_rest bench, print one JSON object
  report RESULTS OUT ...   turn the JSON lines compare.sh recorded into docs/BENCHMARKS.md

Every figure in the report comes from RESULTS; nothing is typed in by hand. A case without
measurements is written as "not measured: <reason>".
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

# ---------------------------------------------------------------------------------------------
# parsing


def _ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        return None
    v = float(m.group(1))
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[m.group(2)]


def _bytes(text):
    m = re.fullmatch(r"([0-9.]+)([KMGT]?B)", text)
    if not m:
        return None
    mult = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}[m.group(2)]
    return float(m.group(1)) * mult


def parse_wrk(path):
    out = {"rps": None, "mbps": None, "p50_ms": None, "p99_ms": None, "non2xx": 0, "requests": None,
           "socket_errors": 0}
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "Requests/sec:":
                out["rps"] = float(w[1])
            elif w[0] == "Transfer/sec:":
                b = _bytes(w[1])
                out["mbps"] = round(b / 1e6, 1) if b is not None else None  # wrk's MB is MiB
            elif w[0] in ("50%", "99%") and len(w) == 2:
                out["p%s_ms" % w[0][:-1]] = _ms(w[1])
            elif line.strip().startswith("Non-2xx or 3xx responses:"):
                out["non2xx"] = int(w[-1])
            elif len(w) > 2 and w[1] == "requests" and w[2] == "in":
                out["requests"] = int(w[0])
            elif w[0] == "Socket" and w[1] == "errors:":
                out["socket_errors"] = sum(int(x.rstrip(",")) for x in w[3::2])
    return out


CRITERION = {
    "seal/64KiB": ("seal", "64KiB"),
    "seal/16MiB": ("seal", "16MiB"),
    "open/64KiB": ("open", "64KiB"),
    "open/16MiB": ("open", "16MiB"),
    "raw_encrypt/64KiB": ("raw_aes_gcm", "encrypt_in_place", "64KiB"),
    "raw_encrypt/16MiB": ("raw_aes_gcm", "encrypt_in_place", "16MiB"),
    "raw_decrypt/64KiB": ("raw_aes_gcm", "decrypt_out_of_place", "64KiB"),
    "raw_decrypt/16MiB": ("raw_aes_gcm", "decrypt_out_of_place", "16MiB"),
}
SIZES = {"64KiB": 64 * 1024, "16MiB": 16 * 1024 * 1024}


def parse_criterion(root):
    mbps = {}
    for name, parts in CRITERION.items():
        path = os.path.join(root, *parts, "new", "estimates.json")
        try:
            with open(path) as f:
                est = json.load(f)
        except OSError:
            continue
        ns = est["mean"]["point_estimate"]
        lo = est["mean"]["confidence_interval"]["lower_bound"]
        hi = est["mean"]["confidence_interval"]["upper_bound"]
        size = SIZES[parts[-1]]
        mbps[name] = {"mbps": round(size / ns * 1e3, 1), "mbps_lo": round(size / hi * 1e3, 1),
                      "mbps_hi": round(size / lo * 1e3, 1)}
    return {"case": "g", "criterion": mbps}


# ---------------------------------------------------------------------------------------------
# report


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def machine(args):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = "%.1f GiB" % (kb / 1024 / 1024)
    except (OSError, ValueError, IndexError):
        pass
    commit = sh("git", "rev-parse", "--short=12", "HEAD")
    dirty = sh("git", "status", "--porcelain", "--untracked-files=no")
    return [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("git commit", commit + (" (with uncommitted changes to tracked files)" if dirty else "")),
        ("CPU", cpu or "?"),
        ("cores", str(os.cpu_count())),
        ("memory", mem or "?"),
        ("kernel", platform.release()),
        ("rustc", sh("rustc", "--version") or "?"),
        ("nginx", args.nginx),
        ("wrk", args.wrk),
        ("python", platform.python_version()),
        ("load average at the end", " ".join(open("/proc/loadavg").read().split()[:3])),
    ]


def fmt(v, nd=1):
    if v is None:
        return "—"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return "{:,.0f}".format(v).replace(",", " ")
        return "%.*f" % (nd, v)
    return str(v)


def med_range(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


PAIRS = {
    # case: (title, metric key, unit, goal text, goal test on the median ratio, higher is better)
    "a": ("download 64 KiB via token vs nginx secure_link", "rps", "req/s", "≥ 0.6×", lambda r: r >= 0.6),
    "b": ("download 16 MiB via token vs nginx secure_link", "mbps", "MB/s", "≥ 0.75×", lambda r: r >= 0.75),
    "c": ("tampered token → 401 vs nginx wrong md5 → 403", "rps", "req/s", "≥ 0.8×", lambda r: r >= 0.8),
    "d": ("sealed upload 16 MiB (distinct blobs) vs plain PUT to nginx (same store)", "mb_per_s", "MB/s",
          "≥ 0.8×", lambda r: r >= 0.8),
}


def report(args):
    recs = []
    with open(args.results) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    by_case = {}
    skipped = {}
    for r in recs:
        if "skipped" in r:
            skipped.setdefault(r["case"], r["skipped"])
        else:
            by_case.setdefault(r["case"], []).append(r)

    def not_measured(case):
        return "not measured: " + skipped.get(case, "no measurement was recorded (see the run's log)")

    L = []
    w = L.append
    w("# Benchmarks: interop-media side by side with anchors")
    w("")
    w("Generated by `bash benches/compare.sh` from its own measurements (do not edit by hand;")
    w("rerun the script). The load generator and the servers share the same cores, and other work")
    w("may run on the machine, so absolute numbers are noisy: every case is reported as a ratio to an")
    w("anchor measured in the same run, service and anchor alternating within each round (the order")
    w("flips every other round). Ratio = service / anchor per round; the median and the min–max over")
    w("the rounds are shown. MB/s = 10^6 bytes/s.")
    w("")
    w("Settings: DURATION=%s per run, ROUNDS=%s, wrk -t%s -c%s for a–c, %s upload connections for d,"
      % (args.duration, args.rounds, args.threads, args.conns, args.upload_conc))
    w("wrk -t1 -c%s for f. Service: the release binary `%s`, `serve --dev` (file store, a fresh"
      % (args.lat_conns, os.path.basename(args.bin)))
    w("data dir per phase).")
    w("")
    w("## Summary")
    w("")
    w("| case | what | service (median) | anchor (median) | ratio median | ratio min–max | goal | met |")
    w("|---|---|---|---|---|---|---|---|")

    details = []
    d = details.append

    # ---- a–d: paired ratios
    for case, (title, key, unit, goal, test) in PAIRS.items():
        rows = by_case.get(case, [])
        rounds = sorted({r["round"] for r in rows})
        per = {}
        for r in rows:
            per.setdefault(r["round"], {})[r["side"]] = r["m"]
        ratios = []
        for rd in rounds:
            s, a = per[rd].get("service"), per[rd].get("anchor")
            if s and a and s.get(key) and a.get(key):
                ratios.append(s[key] / a[key])
        if not ratios:
            w("| %s | %s | — | — | — | — | %s | %s |" % (case, title, goal, not_measured(case)))
            continue
        sm, _, _ = med_range([per[rd].get("service", {}).get(key) for rd in rounds])
        am, _, _ = med_range([per[rd].get("anchor", {}).get(key) for rd in rounds])
        rm, rlo, rhi = med_range(ratios)
        met = "yes" if test(rm) else "**no**"
        if not test(rlo) and test(rm):
            met += " (not in every round)"
        w("| %s | %s | %s %s | %s %s | %.2f× | %.2f–%.2f× | %s | %s |"
          % (case, title, fmt(sm), unit, fmt(am), unit, rm, rlo, rhi, goal, met))
        # raw figures
        d("### %s. %s" % (case, title))
        d("")
        if case in "abc":
            d("| round | side | HTTP status | req/s | MB/s | p50 ms | p99 ms | non-2xx | socket errors |")
            d("|---|---|---|---|---|---|---|---|---|")
            for rd in rounds:
                for side in ("service", "anchor"):
                    m = per[rd].get(side)
                    if m:
                        d("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                            rd, side, m.get("status", "—"), fmt(m.get("rps")), fmt(m.get("mbps")),
                            fmt(m.get("p50_ms"), 2), fmt(m.get("p99_ms"), 2), m.get("non2xx", 0),
                            m.get("socket_errors", 0)))
            if case == "c":
                d("")
                d("Here every response is a refusal (non-2xx is the expected outcome): the service")
                d("answers the tampered token with the status shown, nginx the wrong md5 with 403.")
        else:
            d("| round | side | uploads | statuses | errors | req/s | MB/s | p50 ms | p99 ms | client CPU s |")
            d("|---|---|---|---|---|---|---|---|---|---|")
            for rd in rounds:
                for side in ("service", "anchor"):
                    m = per[rd].get(side)
                    if m:
                        d("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                            rd, side, m["requests"], json.dumps(m["statuses"]).replace("|", "/"),
                            m["errors"], fmt(m["req_per_s"]), fmt(m["mb_per_s"]), fmt(m["p50_ms"], 0),
                            fmt(m["p99_ms"], 0), m["client_cpu_s"]))
            d("")
            d("Both sides get the same Python client (`benches/load_client.py`, one thread per")
            d("connection, bodies sent from shared memory, distinct blobs); the service side posts")
            d("`POST /v1/media` with the digest (it hashes, checks, encrypts at rest and stores), the")
            d("anchor side a bare `PUT /put/<n>.bin` that nginx (`benches/nginx-put.conf`,")
            d("`dav_methods PUT`) writes to a temp file and renames into place, in the same file system")
            d("as the service's store (D_STORE=%s: %s). Only" % (args.d_store, "tmpfs, /dev/shm" if args.d_store == "ram" else "the disk"))
            d("200/201 (service) and 201/204 (anchor) count as uploaded; 503s (upload admission) are in")
            d("the statuses column. The service gets a fresh data dir every run; the anchor's files are")
            d("deleted after every run.")
        d("")
        d("Ratios per round: " + ", ".join("%.2f" % x for x in ratios))
        d("")

    if "d-s3" in skipped or "d-s3" in by_case:
        w("| d | sealed upload 16 MiB to the S3 backend vs a plain PUT to the same S3 server | — | — | — | — | ≥ 0.8× | not measured: %s |"
          % skipped.get("d-s3", "no measurement was recorded"))

    # ---- e: peak RSS
    for case, title in (("e32x256", "peak RSS during 32 concurrent 256 MiB uploads"),
                        ("e8x1024", "peak RSS during 8 concurrent 1 GiB uploads")):
        rows = [r for r in by_case.get(case, []) if "m" in r]
        idle = [r["idle_vmhwm_mib"] for r in by_case.get(case, []) if "idle_vmhwm_mib" in r]
        goal = "≤ 150 MiB" if case == "e32x256" else "≤ 150 MiB (assumed: the brief states the budget for 32×256 MiB)"
        if not rows:
            reason = skipped.get(case) or skipped.get("e") or "no measurement was recorded (see the run's log)"
            w("| e | %s | — | no anchor | — | — | %s | not measured: %s |" % (title, goal, reason))
            continue
        m = rows[0]["m"]
        hwm = m.get("server_vmhwm_mib")
        ok = sum(v for k, v in m["statuses"].items() if k in ("200", "201"))
        n503 = m["statuses"].get("503", 0)
        met = "yes" if hwm is not None and hwm <= 150 else "**no**"
        if ok < m["concurrency"]:
            met += " (only %d of %d uploads succeeded)" % (ok, m["concurrency"])
        w("| e | %s | VmHWM %s MiB | no anchor | — | — | %s | %s |" % (title, fmt(hwm), goal, met))
        d("### e. %s" % title)
        d("")
        d("| idle VmHWM MiB | VmHWM MiB | max sampled VmRSS MiB | max sampled RssShmem MiB | statuses | 503 | 429/503 waited out and sent again | errors | seconds | aggregate MB/s |")
        d("|---|---|---|---|---|---|---|---|---|---|")
        d("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            fmt(idle[0]) if idle else "—", fmt(hwm), fmt(m.get("server_max_rss_mib")),
            fmt(m.get("server_max_rss_shmem_mib")),
            json.dumps(m["statuses"]).replace("|", "/"), n503, m.get("retried_busy", 0), m["errors"],
            m["seconds"], fmt(m["mb_per_s"])))
        d("")
        d("A fresh service (store on tmpfs, since these runs write GiBs and the disk is small; the")
        d("service writes its store with write(), so tmpfs pages are not in its RSS unless mapped:")
        d("the RssShmem column shows they are not). VmHWM is read from /proc/PID/status after the")
        d("last upload; the client samples VmRSS every 20 ms as well. Upload admission makes uploads")
        d("beyond `limits.uploads.memory_mib` wait, then answer 429/503 with Retry-After; the client")
        d("waits that out and sends again, as a gateway should (`--retry-busy`), so every upload ends")
        d("stored; the retries are counted.")
        d("")

    # ---- f: latency under load
    rows = by_case.get("f", [])
    per = {}
    for r in rows:
        per.setdefault(r["round"], {})[r["side"]] = r["m"]
    ratios = []
    for rd in sorted(per):
        a, l = per[rd].get("alone"), per[rd].get("loaded")
        if a and l and a.get("p99_ms") and l.get("p99_ms"):
            ratios.append(l["p99_ms"] / a["p99_ms"])
    title = "p99 of a 64 KiB download during 8×256 MiB uploads vs alone"
    if not ratios:
        w("| f | %s | — | — | — | — | ≤ 2× | %s |" % (title, not_measured("f")))
    else:
        lm, _, _ = med_range([per[rd].get("loaded", {}).get("p99_ms") for rd in per])
        am, _, _ = med_range([per[rd].get("alone", {}).get("p99_ms") for rd in per])
        rm, rlo, rhi = med_range(ratios)
        met = "yes" if rm <= 2 else "**no**"
        if rhi > 2 and rm <= 2:
            met += " (not in every round)"
        w("| f | %s | p99 %s ms loaded | p99 %s ms alone | %.2f× | %.2f–%.2f× | ≤ 2× | %s |"
          % (title, fmt(lm, 2), fmt(am, 2), rm, rlo, rhi, met))
        d("### f. %s" % title)
        d("")
        d("| round | side | req/s | p50 ms | p99 ms | non-2xx | background uploads (statuses, MB/s) |")
        d("|---|---|---|---|---|---|---|")
        for rd in sorted(per):
            for side in ("alone", "loaded"):
                m = per[rd].get(side)
                if not m:
                    continue
                bg = per[rd].get("background") if side == "loaded" else None
                bgt = "%s, %s MB/s" % (json.dumps(bg["statuses"]).replace("|", "/"), fmt(bg["mb_per_s"])) if bg else "—"
                d("| %s | %s | %s | %s | %s | %s | %s |" % (rd, side, fmt(m.get("rps")), fmt(m.get("p50_ms"), 2),
                                                       fmt(m.get("p99_ms"), 2), m.get("non2xx", 0), bgt))
        d("")
        d("Ratio = loaded p99 / alone p99 per round (lower is better): " + ", ".join("%.2f" % x for x in ratios))
        d("wrk -t1 -c%s on one token URL; the uploads (load_client.py, 8 connections, 256 MiB distinct"
          % args.lat_conns)
        d("blobs) start 1 s before wrk and run until it ends; the store is on tmpfs.")
        d("")

    # ---- g: at-rest crypto
    g = next((r for r in by_case.get("g", []) if "criterion" in r), None)
    ossl = next((r for r in by_case.get("g-openssl", [])), None)
    crit = g["criterion"] if g else {}
    gl = []
    for size in ("16MiB", "64KiB"):
        for op, raw in (("seal", "raw_encrypt"), ("open", "raw_decrypt")):
            s, r = crit.get("%s/%s" % (op, size)), crit.get("%s/%s" % (raw, size))
            if s and r:
                gl.append((op, size, s["mbps"], r["mbps"], s["mbps"] / r["mbps"]))
    if not gl:
        w("| g | at-rest STREAM seal/open vs raw aes-gcm | — | — | — | — | none stated | %s |" % not_measured("g"))
    for op, size, s, r, ratio in gl:
        w("| g | at-rest %s %s vs raw aes-gcm 0.11 (criterion) | %s MB/s | %s MB/s | %.2f× | single run | none stated | — |"
          % (op, size, fmt(s), fmt(r), ratio))
    raw16 = crit.get("raw_encrypt/16MiB")
    if ossl and raw16:
        w("| g | raw aes-gcm encrypt 16 MiB vs `openssl speed -evp aes-256-gcm` 16 KiB blocks | %s MB/s | %s MB/s | %.2f× | single run | none stated | — |"
          % (fmt(raw16["mbps"]), fmt(float(ossl["gcm_16k_mbps"])), raw16["mbps"] / ossl["gcm_16k_mbps"]))
    if crit:
        d("### g. at-rest crypto (criterion, `cargo bench --bench at_rest`)")
        d("")
        d("| bench | MB/s (mean) | 95 % interval of the mean |")
        d("|---|---|---|")
        for name in CRITERION:
            v = crit.get(name)
            if v:
                d("| %s | %s | %s–%s |" % (name, fmt(v["mbps"]), fmt(v["mbps_lo"]), fmt(v["mbps_hi"])))
        if ossl:
            d("| openssl speed aes-256-gcm, 16 KiB blocks, 1 core (`benches/openssl-speed.sh`) | %s | — |"
              % fmt(float(ossl["gcm_16k_mbps"])))
        d("")
        d("`seal`/`open` are the at-rest STREAM (`Sealer`/`Opener`, 64 KiB chunks) of the library;")
        d("`raw_*` the same AES-256-GCM calls on 64 KiB chunks without the STREAM's buffering (see the")
        d("caveat at the top of `benches/at_rest.rs`). One criterion run, not alternated rounds.")
        d("")

    env = next(iter(by_case.get("env", [])), None)
    w("")
    if env:
        w("Stores: for a–d the service's file store and nginx's folders are on %s (D_STORE=%s), for"
          % (env["ram_dir"] + " (tmpfs)" if env["d_store"] == "ram" else env["disk_dir"] + " (disk)",
             env["d_store"]))
        w("e and f the service's store is on %s: these runs write GiBs, and at the start %s GiB were"
          % (env["ram_dir"] + " (tmpfs)", env["disk_free_gib"]))
        w("free on %s (%s GiB on %s)." % (env["disk_dir"], env["ram_free_gib"], env["ram_dir"]))
    w("\"met\" is judged on the median ratio; \"not in every round\" flags a median that meets the goal")
    w("while some round did not. MB/s for downloads is wrk's Transfer/sec (bodies plus headers).")
    w("")
    w("## Raw figures of every round")
    w("")
    L.extend(details)
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    for k, v in machine(args):
        w("| %s | %s |" % (k, v))
    w("")
    with open(args.out, "w") as f:
        f.write("\n".join(L).rstrip() + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("wrk")
    s.add_argument("file")
    s = sub.add_parser("criterion")
    s.add_argument("dir")
    s = sub.add_parser("report")
    s.add_argument("results")
    s.add_argument("out")
    for k in ("duration", "rounds", "threads", "conns", "upload-conc", "lat-conns", "bin", "nginx", "wrk", "d-store"):
        s.add_argument("--" + k, default="?")
    a = p.parse_args()
    if a.cmd == "wrk":
        print(json.dumps(parse_wrk(a.file)))
    elif a.cmd == "criterion":
        print(json.dumps(parse_criterion(a.dir)))
    else:
        report(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Upload load client for benches/load.sh (Python 3 stdlib only).

Every request uploads a *distinct* blob, so the service really hashes, encrypts and stores
each one (the same blob from the same partner would be deduplicated and answer 200 without
being stored again). A blob is `prefix || "%016x" % n`: one shared random prefix plus a
16-byte counter, so its SHA-256 costs one `hashlib` copy + 16 bytes per request, and the body
is sent from shared memoryviews (no per-request copy; memory stays flat even for 32 x 256 MiB).

Subcommands
  digests  PREFIX_FILE COUNT OUT   hex SHA-256 of PREFIX||"%016x"%n for n < COUNT, one per line
                                   (used by the wrk Lua script for small uploads)
  upload   --base URL --key KEY --size BYTES --concurrency N (--duration S | --count N)
           [--watch-pid PID]       upload distinct blobs on N keep-alive connections; prints a
           [--plain-put PREFIX]    summary and a `RESULT {json}` line; with --watch-pid samples
                                   that process's VmRSS every 20 ms and reports VmHWM; with
                                   --plain-put, each blob is a bare `PUT PREFIX<n>.bin` instead
                                   (no auth or media headers: the anchor of benches/compare.sh,
                                   a WebDAV PUT to nginx); 201/204 count as success there
  mint     --base URL --key KEY --size BYTES
                                   upload one distinct blob, mint a download token, print its URL
"""

import argparse
import hashlib
import http.client
import itertools
import json
import os
import resource
import sys
import threading
import time
import urllib.parse

CHUNK = 1 << 20


class Blobs:
    """Distinct blobs of one size sharing a random prefix."""

    def __init__(self, size):
        if size < 16:
            raise SystemExit("size must be >= 16")
        self.size = size
        prefix = os.urandom(size - 16)
        self.base_hash = hashlib.sha256(prefix)
        view = memoryview(prefix)
        self.chunks = [view[i : i + CHUNK] for i in range(0, len(prefix), CHUNK)]
        self.counter = itertools.count()  # next() is atomic under the GIL
        # Distinct across runs too (a reused data dir would otherwise deduplicate).
        self.salt = int.from_bytes(os.urandom(4), "big") << 32
        self.put_names = itertools.count()

    def next(self):
        n = self.salt + next(self.counter)
        suffix = b"%016x" % n
        h = self.base_hash.copy()
        h.update(suffix)
        return self.chunks + [suffix], h.hexdigest()


def connect(base):
    u = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)


def put_one(conn, blobs, prefix):
    body, _ = blobs.next()
    n = next(blobs.put_names)
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blobs.size)}
    conn.request("PUT", "%s%d-%d.bin" % (prefix, blobs.salt, n), body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.getheader("Connection", "").lower() == "close":
        conn.close()
    return resp.status, data


def upload_one(conn, blobs, key, kind, fmt, retries=None):
    body, digest = blobs.next()
    headers = {
        "Authorization": "Bearer " + key,
        "X-Media-Kind": kind,
        "X-Media-Format": fmt,
        "X-Media-Sha256": digest,
        "Content-Type": "application/octet-stream",
        "Content-Length": str(blobs.size),
    }
    conn.request("POST", "/v1/media", body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.getheader("Connection", "").lower() == "close":
        conn.close()
    if retries is not None and resp.status in (429, 503) and retries[0] > 0:
        # Upload admission said "no room yet": do what a gateway should, wait Retry-After
        # and send again.
        retries[0] -= 1
        retries[1] += 1
        conn.close()  # the refused body was not read: the server closes; the next request reconnects
        time.sleep(float(resp.getheader("Retry-After", "1")))
        return upload_one(conn, blobs, key, kind, fmt, retries)
    return resp.status, data


def rss_sampler(pid, stop, out):
    path = f"/proc/{pid}/status"
    while not stop.is_set():
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        kb = int(line.split()[1])
                        out["max_rss_kb"] = max(out.get("max_rss_kb", 0), kb)
                    elif line.startswith("VmHWM:"):
                        out["hwm_kb"] = int(line.split()[1])
                    elif line.startswith("RssShmem:"):
                        kb = int(line.split()[1])
                        out["max_shmem_kb"] = max(out.get("max_shmem_kb", 0), kb)
        except OSError:
            return
        stop.wait(0.02)


def percentile(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    i = min(len(sorted_vals) - 1, int(round(p / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[i]


def cmd_digests(a):
    with open(a.prefix_file, "rb") as f:
        base = hashlib.sha256(f.read())
    with open(a.out, "w") as out:
        for n in range(a.count):
            h = base.copy()
            h.update(b"%016x" % n)
            out.write(h.hexdigest())
            out.write("\n")


def cmd_upload(a):
    blobs = Blobs(a.size)
    lock = threading.Lock()
    statuses = {}
    latencies = []
    errors = []
    retried = [0]  # 429/503 answers waited out and sent again (--retry-busy)
    remaining = itertools.count()  # for --count
    deadline = None

    def worker():
        conn = connect(a.base)
        while True:
            if a.count is not None:
                if next(remaining) >= a.count:
                    break
            elif time.monotonic() >= deadline:
                break
            t0 = time.monotonic()
            status = None
            resets = 0
            while status is None:
                try:
                    if a.plain_put:
                        status, _ = put_one(conn, blobs, a.plain_put)
                    else:
                        budget = [a.retry_busy, 0] if a.retry_busy else None
                        status, _ = upload_one(conn, blobs, a.key, a.kind, a.format, budget)
                        if budget:
                            with lock:
                                retried[0] += budget[1]
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        errors.append(repr(e))
                    conn.close()
                    conn = connect(a.base)
                    # A refusal (429/503) that closes the connection while this client is
                    # still sending the body arrives as a reset, not as the answer: with
                    # --retry-busy, wait and send again like after a 503 (counted in errors).
                    if a.retry_busy and resets < a.retry_busy:
                        resets += 1
                        time.sleep(1)
                        continue
                    break
            if status is None:
                continue
            dt = time.monotonic() - t0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(dt)
        conn.close()

    stop = threading.Event()
    rss = {}
    sampler = None
    if a.watch_pid:
        sampler = threading.Thread(target=rss_sampler, args=(a.watch_pid, stop, rss), daemon=True)
        sampler.start()

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    deadline = t0 + (a.duration or 0)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    if sampler:
        sampler.join()
        try:
            with open(f"/proc/{a.watch_pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        rss["hwm_kb"] = int(line.split()[1])
        except OSError:
            pass

    good = (200, 201, 204) if a.plain_put else (200, 201)
    ok = sum(v for k, v in statuses.items() if k in good)
    stored = statuses.get(201, 0)
    lat = sorted(latencies)
    result = {
        "size": a.size,
        "concurrency": a.concurrency,
        "seconds": round(elapsed, 3),
        "requests": len(latencies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": len(errors),
        "retried_busy": retried[0],
        "req_per_s": round(ok / elapsed, 1) if elapsed else 0,
        "stored_per_s": round(stored / elapsed, 1) if elapsed else 0,
        "mb_per_s": round(ok * a.size / elapsed / 1e6, 1) if elapsed else 0,
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "client_cpu_s": round(
            (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 2
        ),
    }
    if rss:
        result["server_max_rss_mib"] = round(rss.get("max_rss_kb", 0) / 1024, 1)
        result["server_vmhwm_mib"] = round(rss.get("hwm_kb", 0) / 1024, 1)
        result["server_max_rss_shmem_mib"] = round(rss.get("max_shmem_kb", 0) / 1024, 1)
    if errors:
        result["first_error"] = errors[0]
    print(
        f"  {result['requests']} uploads of {a.size} B in {elapsed:.2f}s, "
        f"statuses {result['statuses']}, errors {len(errors)}: "
        f"{result['req_per_s']} req/s, {result['mb_per_s']} MB/s, "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"client CPU {result['client_cpu_s']} s"
        + (
            f", server RSS max {result['server_max_rss_mib']} MiB, VmHWM {result['server_vmhwm_mib']} MiB"
            if rss
            else ""
        )
    )
    print("RESULT " + json.dumps(result), flush=True)
    bad = {k: v for k, v in statuses.items() if k not in good}
    return 1 if (bad or errors or not ok) else 0


def cmd_mint(a):
    blobs = Blobs(a.size)
    conn = connect(a.base)
    status, data = upload_one(conn, blobs, a.key, a.kind, a.format)
    if status not in (200, 201):
        sys.stderr.write(f"upload failed: {status} {data[:500]!r}\n")
        return 1
    media = json.loads(data)
    body = json.dumps({"audience": "bench", "ttl_s": a.ttl}).encode()
    conn.request(
        "POST",
        f"/v1/media/{media['id']}/tokens",
        body=body,
        headers={
            "Authorization": "Bearer " + a.key,
            "Content-Type": "application/json",
        },
    )
    resp = conn.getresponse()
    data = resp.read()
    if resp.status not in (200, 201):
        sys.stderr.write(f"token mint failed: {resp.status} {data[:500]!r}\n")
        return 1
    url = json.loads(data)["url"]
    if not url.startswith("http"):
        url = a.base.rstrip("/") + "/" + url.lstrip("/")
    print(url)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("digests")
    d.add_argument("prefix_file")
    d.add_argument("count", type=int)
    d.add_argument("out")

    for name in ("upload", "mint"):
        s = sub.add_parser(name)
        s.add_argument("--base", required=True)
        s.add_argument("--key", required=True)
        s.add_argument("--size", type=int, required=True)
        s.add_argument("--kind", default="document")
        s.add_argument("--format", default="opaque")
        if name == "upload":
            s.add_argument("--concurrency", type=int, default=8)
            g = s.add_mutually_exclusive_group(required=True)
            g.add_argument("--duration", type=float)
            g.add_argument("--count", type=int)
            s.add_argument("--watch-pid", type=int)
            s.add_argument("--plain-put", metavar="PREFIX")
            s.add_argument("--retry-busy", type=int, default=0, metavar="N",
                           help="wait Retry-After and send again on 429/503, at most N times per upload")
        else:
            s.add_argument("--ttl", type=int, default=300)

    a = p.parse_args()
    return {"digests": cmd_digests, "upload": cmd_upload, "mint": cmd_mint}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())

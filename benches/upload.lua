-- wrk script for benches/load.sh: POST /v1/media with a distinct blob per request.
--
-- Blob n = PREFIX || string.format("%016x", n); its SHA-256 was precomputed by
-- `load_client.py digests` (one hex digest per line, line n+1 for blob n), because wrk's Lua
-- cannot hash cheaply. Threads interleave n (thread t sends t, t+T, t+2T, ...), so no blob is
-- sent twice until the digest list wraps around; wrapped requests are deduplicated by the
-- service (200 instead of 201) and are counted separately.
--
-- Environment: BENCH_KEY, BENCH_PREFIX_FILE, BENCH_DIGESTS_FILE, BENCH_THREADS,
--              BENCH_KIND (default document), BENCH_FORMAT (default opaque)

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

function init(args)
   key = os.getenv("BENCH_KEY")
   kind = os.getenv("BENCH_KIND") or "document"
   format = os.getenv("BENCH_FORMAT") or "opaque"
   nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
   local f = assert(io.open(os.getenv("BENCH_PREFIX_FILE"), "rb"))
   prefix = f:read("*a")
   f:close()
   digests = {}
   for line in io.lines(os.getenv("BENCH_DIGESTS_FILE")) do
      digests[#digests + 1] = line
   end
   n = tid
   created, dedup, other = 0, 0, 0
end

function request()
   local i = n % #digests
   n = n + nthreads
   return wrk.format("POST", "/v1/media", {
      ["Authorization"] = "Bearer " .. key,
      ["X-Media-Kind"] = kind,
      ["X-Media-Format"] = format,
      ["X-Media-Sha256"] = digests[i + 1],
      ["Content-Type"] = "application/octet-stream",
   }, prefix .. string.format("%016x", i))
end

function response(status, headers, body)
   if status == 201 then
      created = created + 1
   elseif status == 200 then
      dedup = dedup + 1
   else
      other = other + 1
      if other <= 3 then
         io.stderr:write("upload answered " .. status .. ": " .. string.sub(body or "", 1, 300) .. "\n")
      end
   end
end

function done(summary, latency, requests)
   local c, d, o = 0, 0, 0
   for _, t in ipairs(threads) do
      c = c + (t:get("created") or 0)
      d = d + (t:get("dedup") or 0)
      o = o + (t:get("other") or 0)
   end
   io.write(string.format("STATUSES created=%d dedup=%d other=%d seconds=%.3f\n",
                          c, d, o, summary.duration / 1e6))
end

-- wrk script for benches/seal_load.sh: POST /v1/media?seal=whatsapp with one photo.
-- Every request gets a fresh media key from the service, so no two stored blobs are equal
-- and deduplication never short-cuts the work. Env: KEY (partner key), PHOTO (file path).
local f = assert(io.open(os.getenv("PHOTO"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.path = "/v1/media?seal=whatsapp"
wrk.body = body
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
wrk.headers["X-Media-Kind"] = "image"
wrk.headers["Content-Type"] = "image/jpeg"

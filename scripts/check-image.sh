#!/usr/bin/env bash
# Runs the Dockerfile's build steps without a Docker engine and checks the
# result, so CI exercises exactly what the image build runs:
#   1. scripts/docker/build-server.sh   (the build-cpu stage)
#   2. scripts/fetch-onnxruntime.sh     (the onnxruntime-cpu stage)
#   3. scripts/docker/install-layout.sh (the cpu stage)
# into a scratch root laid out like the image, then starts the server from
# there as `tritonserver`, waits for the health check the image's
# HEALTHCHECK runs, checks that /predict and the metrics page answer, and
# reports the expected image size.
set -euo pipefail
cd "$(dirname "$0")/.."

root=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$root"
}
trap cleanup EXIT

scripts/docker/build-server.sh "$root/opt/tritonrs"
scripts/fetch-onnxruntime.sh "$root/opt/tritonrs/lib"
scripts/docker/install-layout.sh "$root"

# The image's ENTRYPOINT is the binary and its PATH has tritonserver; run it
# the way a Triton container spec would.
log=$root/server.log
started=$(date +%s%N)
PATH="$root/usr/local/bin:$PATH" NO_COLOR=1 tritonserver \
  --model-repository=examples/model_repository \
  --http-address=127.0.0.1 --http-port=0 --grpc-address=127.0.0.1 --grpc-port=0 --metrics-port=0 >"$log" 2>&1 &
server_pid=$!
port=
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*Started HTTPService at 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n 1)
  if [ -n "$port" ] && curl -fsS "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1; then
    break
  fi
  port=
  sleep 0.05
done
if [ -z "$port" ]; then
  echo "the staged server did not become ready; its log:" >&2
  cat "$log" >&2
  exit 1
fi
ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
grep -q "library=$root/opt/tritonrs/lib/libonnxruntime.so.1.31.1" "$log" || {
  echo "the staged server did not load ONNX Runtime from the image layout:" >&2
  cat "$log" >&2
  exit 1
}
curl -fsS -X POST "http://127.0.0.1:$port/predict" -H 'model_name: scale_fp16' \
  -d '{"instances": [[2, 4, 6, 8]]}' | grep -q '"predictions":\[\[1.0,2.0,3.0,4.0\]\]'
metrics_port=$(sed -n 's/.*Started Metrics Service at 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n 1)
metrics=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics")
grep -q '^nv_inference_request_success{model="scale_fp16",version="1"} 1$' <<<"$metrics" || {
  echo "the staged server's metrics do not count the /predict request:" >&2
  echo "$metrics" >&2
  exit 1
}
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=
echo "staged image layout: ready in ${ready_ms} ms (process start to /v2/health/ready)"

python3 scripts/docker/image_size.py "$root/opt/tritonrs"

#!/usr/bin/env bash
# The consumer's streaming relay, measured: a synthetic InvoiceItem file of about 1 GiB and 8 GiB is exported from
# the simulator and relayed by one `consumer` process into an S3 server (Garage), and the same file is piped through
# `curl ... | aws s3 cp - s3://...` into the same kind of server. Prints throughput, peak RSS and CPU seconds per GB
# for both. Results and how to read them: docs/benchmarks.md.
#
# Usage: tests/bench/relay.sh [SIZES_GIB...]   (default: 1 8)
# Needs: what tests/run.sh installs (moto for SQS, Garage 2.5.0 for S3), plus awscli 1.x (installed on first use
# into ./.bench).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bench="$root/.bench"
if [[ $# -gt 0 ]]; then sizes=("$@"); else sizes=(1 8); fi
mkdir -p "$bench"
cd "$root"

garage_bin="$root/.tools/bin/garage"
if [[ ! -x "$root/.venv/bin/moto_server" || ! -x "$garage_bin" ]]; then
  echo "bench: run ./tests/run.sh once first (it installs moto into .venv and Garage into .tools)" >&2
  exit 1
fi
if [[ ! -x "$bench/venv/bin/aws" ]]; then
  echo "bench: installing awscli 1.x into $bench/venv" >&2
  python3 -m venv "$bench/venv"
  "$bench/venv/bin/pip" install --quiet --disable-pip-version-check 'awscli==1.45.11' boto3
fi
cargo build --release --quiet -p zuora-sim -p consumer -p producer

pids=()
bounds=()
s3_pid=""
s3_dir=""
# Each measurement gets a fresh S3 server whose data lives in memory (tmpfs) when the machine has one, so that what
# is measured is the relays, not how fast this machine's disk absorbs writes, and at most one file is held at a time.
if [[ -d /dev/shm && -w /dev/shm ]]; then s3_root=/dev/shm; else s3_root="$bench"; fi
export AWS_ACCESS_KEY_ID=GK0123456789abcdef01234567 AWS_SECRET_ACCESS_KEY=$(printf 'b%.0s' {1..64})
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
# shellcheck source=tests/garage.sh
source "$root/tests/garage.sh"

# A fresh single-node Garage (no replication, no compression): sets s3_port.
start_s3() {
  s3_dir=$(mktemp -d "$s3_root/relay-bench-garage.XXXXXX")
  garage_start "$s3_dir" 'compression_level = "none"'
  s3_port=$garage_port s3_pid=$garage_pid
}
stop_s3() {
  if [[ -n "$s3_pid" ]]; then kill "$s3_pid" 2>/dev/null || true; wait "$s3_pid" 2>/dev/null || true; fi
  if [[ -n "$s3_dir" ]]; then rm -rf "$s3_dir"; fi
  s3_pid="" s3_dir=""
}
cleanup() {
  stop_s3
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$bench/file.csv"
}
trap cleanup EXIT INT TERM

sqs_port=$(free_port); sim_port=$(free_port)
"$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$sqs_port" >"$bench/moto.log" 2>&1 & pids+=($!)
cat >"$bench/sim.toml" <<TOML
listen = "127.0.0.1:$sim_port"
[settings]
job_execution_secs = 0.0
TOML
"$root/target/release/zuora-sim" --config "$bench/sim.toml" >"$bench/sim.log" 2>&1 & sim_pid=$!; pids+=($sim_pid)
sleep 2
sim="http://127.0.0.1:$sim_port"
curl -sf -X PATCH "$sim/sim/settings" -d '{"max_file_bytes": null}' >/dev/null

# CPU seconds a running process has used so far (user + system, from /proc).
ticks_per_s=$(getconf CLK_TCK)
cpu_of() { awk -v t="$ticks_per_s" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
# cpu_since PID SECONDS: CPU seconds the process has used since `cpu_of` gave SECONDS.
cpu_since() { awk -v a="$2" -v b="$(cpu_of "$1")" 'BEGIN {print b - a}'; }
# The peak RSS in MiB and the CPU seconds (user + system) that `/usr/bin/time -v` wrote to FILE.
time_rss() { awk -F': ' '/Maximum resident/ {printf "%.1f", $2/1024}' "$1"; }
time_cpu() { awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$1"; }
# per_gb SECONDS BYTES: seconds per GB.
per_gb() { awk -v c="$1" -v b="$2" 'BEGIN {printf "%.2f", c / (b / 1e9)}'; }

# Rows per GiB of InvoiceItem as the built-in catalogue queries it (measured: about 226 bytes a row).
rows_per_gib=4750000
printf '%-8s %-10s %12s %10s %12s %12s %10s %10s %10s\n' size tool bytes seconds MB/s peak_RSS_MiB cpu_s/GB \
  s3_cpu/GB sim_cpu/GB
for gib in "${sizes[@]}"; do
  rows=$((gib * rows_per_gib))
  curl -sf -X PUT "$sim/sim/objects/InvoiceItem/rows" -d "{\"rows\": $rows}" >/dev/null
  run="$bench/run-$gib"; rm -rf "$run"; mkdir -p "$run"
  start_s3
  "$root/.venv/bin/python" - "$sqs_port" "$s3_port" "$sim" "$run" <<'PY'
import boto3, json, sys, time
sqs_port, s3_port, sim, run = sys.argv[1:]
sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{sqs_port}")
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}")
tag = str(time.time_ns())
urls = {}
for name, fifo in [("requests", False), ("jobs", False), ("lake", True)]:
    suffix = ".fifo" if fifo else ""
    attrs = {"FifoQueue": "true"} if fifo else {}
    urls[name + "_dlq"] = sqs.create_queue(QueueName=f"b-{name}-dlq-{tag}{suffix}", Attributes=attrs)["QueueUrl"]
    urls[name] = sqs.create_queue(QueueName=f"b-{name}-{tag}{suffix}", Attributes=attrs)["QueueUrl"]
bucket = f"bench-{tag}"
s3.create_bucket(Bucket=bucket)
catalogue = open("common/catalogue.toml").read().replace('bucket = "zuora-raw"', f'bucket = "{bucket}"')
open(f"{run}/catalogue.toml", "w").write(catalogue)
queues = "".join(f'{k} = "{v}"\n' for k, v in urls.items())
open(f"{run}/config.toml", "w").write(f'''catalogue = "{run}/catalogue.toml"
[zuora]
base_url = "{sim}"
client_id = "0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b"
client_secret = "sim-client-secret"
[session]
partner = "bench"
project = "bench-{tag}"
[aws]
region = "us-east-1"
sqs_endpoint_url = "http://127.0.0.1:{sqs_port}"
s3_endpoint_url = "http://127.0.0.1:{s3_port}"
[queues]
{queues}[ledger]
bucket = "{bucket}"
[consumer]
wait_secs = 1
poll_delay_secs = 1
''')
open(f"{run}/bucket", "w").write(bucket)
open(f"{run}/lake", "w").write(urls["lake"])
PY
  bucket=$(cat "$run/bucket")
  job=$("$root/target/release/producer" --config "$run/config.toml" submit \
        '{"exportFromDate":"afterLastIncrement","objects":["InvoiceItem"]}' 2>"$run/producer.log" | sed 's/.*jobs //')
  # The simulator writes the file out once, as Zuora keeps a finished job's files, and sends it from there to both
  # tools: rendering millions of rows would otherwise take the CPU the relays are measured on.
  token=$(curl -sf -X POST "$sim/oauth/token" -d client_id=0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b \
          -d client_secret=sim-client-secret -d grant_type=client_credentials | "$root/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  file=""
  until [[ -n "$file" ]]; do
    sleep 1
    file=$(curl -sf "$sim/v1/batch-query/jobs/$job" -H "Authorization: Bearer $token" | "$root/.venv/bin/python" -c \
           'import json,sys; j = json.load(sys.stdin); print(j["batches"][0].get("fileId", "") if j["status"] == "completed" else "")')
  done
  curl -sf -X POST "$sim/sim/files/$file/store" -d "{\"path\": \"$bench/file.csv\"}" >/dev/null
  # The consumer, measured by /usr/bin/time; stopped (SIGTERM) once its completion message is on the lake queue.
  s3_cpu=$(cpu_of "$s3_pid") sim_cpu=$(cpu_of "$sim_pid")
  RUST_LOG=info /usr/bin/time -v -o "$run/consumer.time" "$root/target/release/consumer" --config "$run/config.toml" \
    2>"$run/consumer.log" & consumer_pid=$!
  until grep -q "job done" "$run/consumer.log" 2>/dev/null; do
    if ! kill -0 "$consumer_pid" 2>/dev/null; then echo "bench: consumer died, see $run/consumer.log" >&2; exit 1; fi
    sleep 1
  done
  s3_cpu=$(cpu_since "$s3_pid" "$s3_cpu") sim_cpu=$(cpu_since "$sim_pid" "$sim_cpu")
  pkill -TERM -P "$consumer_pid" 2>/dev/null || true
  wait "$consumer_pid" || true
  line=$(sed 's/\x1b\[[0-9;]*m//g' "$run/consumer.log" | grep ' published ')
  bytes=$(grep -oE 'bytes=[0-9]+' <<<"$line" | head -1 | cut -d= -f2)
  mbs=$(grep -oE 'throughput_mb_s="[0-9.]+"' <<<"$line" | grep -oE '[0-9.]+')
  rss=$(time_rss "$run/consumer.time") cpu=$(time_cpu "$run/consumer.time")
  secs=$(awk -v b="$bytes" -v m="$mbs" 'BEGIN {printf "%.1f", b / (m * 1e6)}')
  printf '%-8s %-10s %12s %10s %12s %12s %10s %10s %10s\n' "${gib}GiB" consumer "$bytes" "$secs" "$mbs" "$rss" \
    "$(per_gb "$cpu" "$bytes")" "$(per_gb "$s3_cpu" "$bytes")" "$(per_gb "$sim_cpu" "$bytes")"
  # With every core busy, the S3 server and the simulator alone allow at most this many GB/s on this machine.
  bound_gbs=$(awk -v n="$(nproc)" -v s="$s3_cpu" -v m="$sim_cpu" -v b="$bytes" 'BEGIN {print n / ((s + m) / (b / 1e9))}')

  stop_s3

  # The baseline: the same file, curl into `aws s3 cp -`, into a fresh server.
  start_s3
  env -u AWS_CA_BUNDLE "$bench/venv/bin/aws" s3 mb "s3://$bucket" --endpoint-url "http://127.0.0.1:$s3_port" >/dev/null
  start=$(date +%s.%N) s3_cpu=$(cpu_of "$s3_pid") sim_cpu=$(cpu_of "$sim_pid")
  /usr/bin/time -f '%U %S' -o "$run/curl.time" curl -sf "$sim/v1/file/$file" -H "Authorization: Bearer $token" | \
    env -u AWS_CA_BUNDLE /usr/bin/time -v -o "$run/awscli.time" "$bench/venv/bin/aws" s3 cp - "s3://$bucket/baseline.csv" \
      --endpoint-url "http://127.0.0.1:$s3_port" --only-show-errors
  end=$(date +%s.%N)
  s3_cpu=$(cpu_since "$s3_pid" "$s3_cpu") sim_cpu=$(cpu_since "$sim_pid" "$sim_cpu")
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')
  rss=$(time_rss "$run/awscli.time") cpu=$(time_cpu "$run/awscli.time")
  printf '%-8s %-10s %12s %10s %12.1f %12s %10s %10s %10s\n' "${gib}GiB" "aws s3 cp" "$bytes" "$secs" \
    "$(awk -v b="$bytes" -v s="$secs" 'BEGIN {print b / s / 1e6}')" "$rss" "$(per_gb "$cpu" "$bytes")" \
    "$(per_gb "$s3_cpu" "$bytes")" "$(per_gb "$sim_cpu" "$bytes")"
  printf '%-8s %-10s %12s %10s %12s %12s %10s\n' "${gib}GiB" "(its curl)" "" "" "" "" \
    "$(per_gb "$(awk '{print $1 + $2}' "$run/curl.time")" "$bytes")"
  bounds+=("$(awk -v g="$gib" -v c="$bound_gbs" -v b="$bytes" -v s="$secs" 'BEGIN {printf "%sGiB: a relay using no CPU at all could reach at most %.0f MB/s, %.2fx aws s3 cp", g, c * 1000, c / (b / s / 1e9)}')")
  stop_s3
  rm -f "$bench/file.csv"
done
# What the S3 server and the simulator leave of this machine's cores, from their CPU per GB in the consumer's run.
printf '%s\n' "${bounds[@]}"

# Sourced by the benchmarks in tests/bench/: the tools they compare with, moto (SQS only) and the simulator on free
# loopback ports, an S3 target per measurement (Garage, or the S3 sink that keeps nothing), a job exported once
# whose file the simulator keeps on disk, and one `consumer` process measured on it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench="$root/.bench"
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
for tool in rclone pigz zstd; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench: $tool is missing (Debian: apt-get install rclone pigz zstd)" >&2
    exit 1
  fi
done
cargo build --release --quiet -p zuora-sim -p consumer -p producer -p test-support --bin zuora-sim --bin consumer \
  --bin producer --bin s3-sink
# Where cargo put them (CARGO_TARGET_DIR, or the workspace's target/ when it is unset).
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release"
python="$bench/venv/bin/python"
# The consumer measured: this workspace's, or another build's (CONSUMER=path, to compare a change with its base
# on the same machine and baselines).
consumer_bin=${CONSUMER:-$bin/consumer}

export AWS_ACCESS_KEY_ID=GK0123456789abcdef01234567 AWS_SECRET_ACCESS_KEY=$(printf 'b%.0s' {1..64})
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
# shellcheck source=tests/garage.sh
source "$root/tests/garage.sh"

pids=()
s3_pid="" s3_dir=""
# S3 data in memory (tmpfs) when the machine has it: what is measured is the relays, not this machine's disk.
if [[ -d /dev/shm && -w /dev/shm ]]; then s3_root=/dev/shm; else s3_root="$bench"; fi

# start_s3 garage|sink: a fresh S3 target; sets s3_port, s3_pid.
start_s3() {
  if [[ $1 == garage ]]; then
    s3_dir=$(mktemp -d "$s3_root/bench-garage.XXXXXX")
    garage_start "$s3_dir" 'compression_level = "none"'
    s3_port=$garage_port s3_pid=$garage_pid
  else
    rm -f "$bench/sink.port"
    "$bin/s3-sink" 0 >"$bench/sink.port" 2>"$bench/sink.log" & s3_pid=$!
    until [[ -s "$bench/sink.port" ]]; do sleep 0.1; done
    s3_port=$(cat "$bench/sink.port")
  fi
  "$python" -c "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1]).create_bucket(Bucket=sys.argv[2])" \
    "http://127.0.0.1:$s3_port" "$bucket"
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
  rm -f "$bench"/file.*
}
trap cleanup EXIT INT TERM

sqs_port=$(free_port); sim_port=$(free_port)
"$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$sqs_port" >"$bench/moto.log" 2>&1 & pids+=($!)
cat >"$bench/sim.toml" <<TOML
listen = "127.0.0.1:$sim_port"
[settings]
job_execution_secs = 0.0
TOML
"$bin/zuora-sim" --config "$bench/sim.toml" >"$bench/sim.log" 2>&1 & sim_pid=$!; pids+=($sim_pid)
sleep 2
sim="http://127.0.0.1:$sim_port"
curl -sf -X PATCH "$sim/sim/settings" -d '{"max_file_bytes": null}' >/dev/null
bucket="bench-$(date +%s%N)"

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
# mb_s BYTES SECONDS
mb_s() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.1f", b / s / 1e6}'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

# Rows per GiB of InvoiceItem as the built-in catalogue queries it (measured: about 226 bytes a row).
rows_per_gib=4750000
token=$(curl -sf -X POST "$sim/oauth/token" -d client_id=0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b \
        -d client_secret=sim-client-secret -d grant_type=client_credentials | \
        "$python" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# queues: creates the requests, jobs and lake queues (and DLQs) on moto; prints their [queues] lines.
queues() {
  "$python" - "$sqs_port" <<'PY'
import boto3, sys, time
sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}")
tag = time.time_ns()
for name, fifo in [("requests", False), ("jobs", False), ("lake", True)]:
    suffix, attrs = (".fifo", {"FifoQueue": "true"}) if fifo else ("", {})
    for part in [name + "_dlq", name]:
        url = sqs.create_queue(QueueName=f"b-{part.replace('_', '-')}-{tag}{suffix}", Attributes=attrs)["QueueUrl"]
        print(f'{part} = "{url}"')
PY
}

# config FILE S3_PORT QUEUE_LINES [SESSION_LINES] [CONSUMER_LINES]: writes FILE, a configuration for the simulator,
# moto's queues and the S3 target at S3_PORT, every object in $bucket.
config() {
  local file=$1 port=$2 queue_lines=$3 session=${4:-} consumer=${5:-}
  local catalogue
  catalogue="$(dirname "$file")/catalogue.toml"
  sed "s/bucket = \"zuora-raw\"/bucket = \"$bucket\"/" common/catalogue.toml >"$catalogue"
  cat >"$file" <<TOML
catalogue = "$catalogue"
[zuora]
base_url = "$sim"
allow_custom_base_url = true
client_id = "0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b"
client_secret = "sim-client-secret"
[session]
partner = "bench"
project = "bench-$bucket-$(basename "$(dirname "$file")")"
$session
[aws]
region = "us-east-1"
sqs_endpoint_url = "http://127.0.0.1:$sqs_port"
s3_endpoint_url = "http://127.0.0.1:$port"
[queues]
$queue_lines
[ledger]
bucket = "$bucket"
[consumer]
wait_secs = 1
poll_delay_secs = 1
emf_metrics = false
$consumer
TOML
}

# export_file RUN ROWS PATH: sets InvoiceItem to ROWS rows, submits its export with RUN's configuration, keeps the
# job message in RUN/job.json (taken off the jobs queue, to be sent again for each measured consumer) and has the
# simulator write the file to PATH once, to serve it from there (rendering millions of rows would otherwise take
# the CPU the relays are measured on). Sets file_id.
export_file() {
  local run=$1 rows=$2 path=$3 job
  curl -sf -X PUT "$sim/sim/objects/InvoiceItem/rows" -d "{\"rows\": $rows}" >/dev/null
  job=$("$bin/producer" --config "$run/config.toml" submit \
        '{"exportFromDate":"afterLastIncrement","objects":["InvoiceItem"]}' 2>"$run/producer.log" | sed 's/.*jobs //')
  file_id=""
  until [[ -n "$file_id" ]]; do
    sleep 1
    file_id=$(curl -sf "$sim/v1/batch-query/jobs/$job" -H "Authorization: Bearer $token" | "$python" -c \
           'import json,sys; j = json.load(sys.stdin); print(j["batches"][0].get("fileId", "") if j["status"] == "completed" else "")')
  done
  curl -sf -X POST "$sim/sim/files/$file_id/store" -d "{\"path\": \"$path\"}" >/dev/null
  "$python" - "$run/config.toml" "$run/job.json" <<'PY'
import boto3, sys, tomllib
config = tomllib.load(open(sys.argv[1], "rb"))
sqs = boto3.client("sqs", endpoint_url=config["aws"]["sqs_endpoint_url"])
while True:
    got = sqs.receive_message(QueueUrl=config["queues"]["jobs"], WaitTimeSeconds=1).get("Messages", [])
    if got:
        open(sys.argv[2], "w").write(got[0]["Body"])
        sqs.delete_message(QueueUrl=config["queues"]["jobs"], ReceiptHandle=got[0]["ReceiptHandle"])
        break
PY
}

# consume RUN NAME: sends RUN/job.json to the jobs queue and runs one `consumer` with RUN/NAME.toml under
# /usr/bin/time until the job is done. Sets c_secs (from the message sent, the process then started, to the
# timestamp of its "job done" line: the same trigger and end as a pipeline's start and exit), c_transfer (the file's
# own transfer time, from its `published` line: download, count, checksums, compression, upload, completion),
# c_stored (bytes stored), c_rss (MiB), c_cpu (s), and s3_cpu / sim_cpu (what the S3 target and the simulator used
# meanwhile).
consume() {
  local run=$1 name=$2 line mbs consumer_pid s3_before sim_before trigger done_at
  s3_before=$(cpu_of "$s3_pid") sim_before=$(cpu_of "$sim_pid") trigger=$(now)
  "$python" -c "import boto3,sys,tomllib; c = tomllib.load(open(sys.argv[1], 'rb')); boto3.client('sqs', endpoint_url=c['aws']['sqs_endpoint_url']).send_message(QueueUrl=c['queues']['jobs'], MessageBody=open(sys.argv[2]).read())" \
    "$run/$name.toml" "$run/job.json"
  RUST_LOG=info ZLE_LOG_FORMAT=json /usr/bin/time -v -o "$run/$name.time" "$consumer_bin" --config "$run/$name.toml" \
    2>"$run/$name.log" & consumer_pid=$!
  until grep -q "job done" "$run/$name.log" 2>/dev/null; do
    if ! kill -0 "$consumer_pid" 2>/dev/null; then echo "bench: consumer died, see $run/$name.log" >&2; exit 1; fi
    sleep 0.05
  done
  s3_cpu=$(cpu_since "$s3_pid" "$s3_before") sim_cpu=$(cpu_since "$sim_pid" "$sim_before")
  pkill -TERM -P "$consumer_pid" 2>/dev/null || true
  wait "$consumer_pid" || true
  # A receive the consumer left waiting (its long poll, wait_secs = 1) goes on at moto after the process is gone,
  # and would take the next run's job message, which SQS then hides for its visibility timeout (30 s).
  sleep 2
  done_at=$(grep '"job done"' "$run/$name.log" | grep -oE '"timestamp":"[^"]+"' | head -1 | cut -d'"' -f4)
  c_secs=$(awk -v a="$trigger" -v b="$(date -d "$done_at" +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
  line=$(grep '"message":"published"' "$run/$name.log")
  c_stored=$(grep -oE '"bytes":[0-9]+' <<<"$line" | head -1 | cut -d: -f2)
  mbs=$(grep -oE '"throughput_mb_s":"[0-9.]+"' <<<"$line" | grep -oE '[0-9.]+')
  c_transfer=$(awk -v b="$c_stored" -v m="$mbs" 'BEGIN {printf "%.2f", b / (m * 1e6)}')
  c_rss=$(time_rss "$run/$name.time") c_cpu=$(time_cpu "$run/$name.time")
}

# row NAME TOOL BYTES SECONDS RSS CPU S3_CPU SIM_CPU: one line of a benchmark's table.
row() {
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$(mb_s "$3" "$4")" "$5" \
    "$(per_gb "$6" "$3")" "$(per_gb "$7" "$3")" "$(per_gb "$8" "$3")"
}

#!/usr/bin/env bash
# A full export at scale: InvoiceItem with ROWS rows (default 20,000,000, about 4.2 GB of CSV), asked for with
# `producer backfill --full`-style request (`"fullExport": true`), split by `producer serve` into windows of
# WINDOW_MONTHS months over the simulator's four years of data, and relayed by two `consumer` processes (two jobs
# in flight each, one part pool each) into Garage. Prints the wall time from the request to the last file
# published, each consumer's peak RSS and CPU, and whether the lake equals the simulator's truth: every row of every
# published file against the truth's rows on the file's columns (a multiset of row hashes, compared whole).
#
# Usage: tests/bench/full_export.sh [ROWS] [COMPRESSION] [WINDOW_MONTHS]   (default: 20000000 none 3)
# Needs: what tests/run.sh installs (moto for SQS, Garage 2.5.0); awscli's venv in ./.bench (installed on first use).
source "$(dirname "$0")/lib.sh"
rows=${1:-20000000}
compression=${2:-none}
window_months=${3:-3}

run="$bench/full-export"; rm -rf "$run"; mkdir -p "$run"
curl -sf -X PUT "$sim/sim/objects/InvoiceItem/rows" -d "{\"rows\": $rows}" >/dev/null
queue_lines=$(queues)
start_s3 garage
consumer_lines="jobs_in_flight = 2
compression = \"$compression\""
config "$run/config.toml" "$s3_port" "$queue_lines" "" "$consumer_lines"
printf '[full_export]\nearliest = "2020-01-01"\nwindow_months = %s\n[producer]\nwait_secs = 1\nbusy_retry_secs = 10\n' \
  "$window_months" >>"$run/config.toml"
ZLE_LOG_FORMAT=json "$bin/producer" --config "$run/config.toml" serve 2>"$run/producer.log" &
services=($!)
for i in 1 2; do
  RUST_LOG=info ZLE_LOG_FORMAT=json /usr/bin/time -v -o "$run/consumer-$i.time" "$bin/consumer" \
    --config "$run/config.toml" 2>"$run/consumer-$i.log" & services+=($!)
done
pids+=("${services[@]}")
started=$(now)
"$python" - "$run/config.toml" <<'PY'
import boto3, json, sys, tomllib
config = tomllib.load(open(sys.argv[1], "rb"))
sqs = boto3.client("sqs", endpoint_url=config["aws"]["sqs_endpoint_url"])
body = {"exportFromDate": "beginning", "fullExport": True, "objects": ["InvoiceItem"], "requestId": "full-bench"}
sqs.send_message(QueueUrl=config["queues"]["requests"], MessageBody=json.dumps(body))
PY
# Done when the producer has enqueued every window and the consumers have published a file for each of them.
"$python" - "$run" <<'PY'
import glob, json, re, sys, time
run = sys.argv[1]
while True:
    time.sleep(2)
    enqueued = {json.loads(l)["job_id"] for l in open(f"{run}/producer.log") if '"enqueued job"' in l}
    served = any('"message":"request served"' in l for l in open(f"{run}/producer.log"))
    published = set()
    for log in glob.glob(f"{run}/consumer-*.log"):
        for line in open(log):
            if '"message":"job done"' in line or '"message":"published"' in line:
                entry = json.loads(line)
                if entry.get("message") == "published":
                    published.add(entry["job_id"])
    if served and enqueued and enqueued <= published:
        print(f"{len(enqueued)} windows published", file=sys.stderr)
        break
PY
secs=$(since "$started")
# The consumers get SIGTERM themselves (/usr/bin/time, their parent, then writes its figures and exits).
kill -TERM "${services[0]}" 2>/dev/null || true
for pid in "${services[@]:1}"; do pkill -TERM -P "$pid" 2>/dev/null || true; done
wait "${services[@]}" 2>/dev/null || true
echo "| rows | compression | windows | files | stored bytes | seconds | consumer 1 peak RSS MiB | consumer 2 peak RSS MiB | consumer CPU s (1 + 2) |"
echo "|---|---|---|---|---|---|---|---|---|"
files=$(cat "$run"/consumer-*.log | grep -c '"message":"published"')
windows=$(grep -c '"enqueued job"' "$run/producer.log")
bytes=$(cat "$run"/consumer-*.log | grep '"message":"published"' | grep -oE '"bytes":[0-9]+' | cut -d: -f2 | paste -sd+ | bc)
echo "| $rows | $compression | $windows | $files | $bytes | $secs | $(time_rss "$run/consumer-1.time") | $(time_rss "$run/consumer-2.time") | $(time_cpu "$run/consumer-1.time") + $(time_cpu "$run/consumer-2.time") |"
# The lake against the truth.
"$python" - "$run" "http://127.0.0.1:$s3_port" "$bucket" "$sim" <<'PY'
import boto3, csv, glob, gzip, io, json, sys, urllib.request
run, endpoint, bucket, sim = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint)
def rows_of(stream):
    reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
    return next(reader), reader
lake, columns = [], None
for log in glob.glob(f"{run}/consumer-*.log"):
    for line in open(log):
        if '"message":"published"' not in line:
            continue
        location = json.loads(line)["location"].removeprefix(f"s3://{bucket}/")
        body = s3.get_object(Bucket=bucket, Key=location)["Body"]
        stream = gzip.GzipFile(fileobj=body) if location.endswith(".gz") else body
        header, reader = rows_of(stream)
        columns = columns or header
        assert header == columns, (header, columns)
        keep = [i for i, name in enumerate(header) if not name.endswith(".IsDeleted")]
        lake.extend(hash(tuple(row[i] for i in keep)) for row in reader)
import tomllib, urllib.parse
catalogue = tomllib.load(open(f"{run}/catalogue.toml", "rb"))
query = next(o["query"] for o in catalogue["object"] if o["name"] == "InvoiceItem")
url = f"{sim}/sim/objects/InvoiceItem/truth?" + urllib.parse.urlencode({"query": query})
with urllib.request.urlopen(url) as response:
    header, reader = rows_of(response)
    at = {name: i for i, name in enumerate(header)}
    keep = [at[name] for name in columns if not name.endswith(".IsDeleted")]
    truth = [hash(tuple(row[i] for i in keep)) for row in reader]
lake.sort(); truth.sort()
print(f"lake rows {len(lake)}, truth rows {len(truth)}: {'the lake equals the truth' if lake == truth else 'THE LAKE DIFFERS FROM THE TRUTH'}")
sys.exit(0 if lake == truth else 1)
PY

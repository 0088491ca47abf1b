#!/usr/bin/env bash
# Compressed downloads from Zuora: one InvoiceItem export asked for as `csv` and as `gzip` (session.file_format),
# each file served at a realistic rate for Zuora's file server across the internet (the simulator's bandwidth cap,
# 20 MB/s by default) and relayed by one `consumer` into Garage. For each: bytes over the wire, the file's transfer
# time, what was stored, the consumer's CPU and memory; the gzip file both stored as it came
# (consumer.gzip_downloads = "keep") and decompressed ("decompress").
# Prints one markdown table; results: docs/benchmarks.md.
#
# Usage: tests/bench/downloads.sh [ROWS] [BYTES_PER_SECOND]   (default: 2000000 rows, 20000000 bytes/s)
# Needs: what tests/run.sh installs (moto for SQS, Garage 2.5.0); awscli's venv in ./.bench (installed on first use).
source "$(dirname "$0")/lib.sh"
rows=${1:-2000000}
rate=${2:-20000000}

echo "| format | stored as | bytes over the wire | seconds | wire MB/s | CSV MB/s | stored bytes | peak RSS MiB | CPU s |"
echo "|---|---|---|---|---|---|---|---|---|"
csv_bytes=""
for format in csv gzip; do
  run="$bench/downloads-$format"; rm -rf "$run"; mkdir -p "$run"
  queue_lines=$(queues)
  start_s3 garage
  config "$run/config.toml" "$s3_port" "$queue_lines" "file_format = \"$format\""
  export_file "$run" "$rows" "$bench/file.$format"
  wire=$(stat -c %s "$bench/file.$format")
  [[ -n "$csv_bytes" ]] || csv_bytes=$wire
  stop_s3
  curl -sf -X PUT "$sim/sim/faults" -d "[{\"endpoint\": \"file\", \"bandwidth_bytes_per_sec\": $rate}]" >/dev/null
  if [[ $format == csv ]]; then stores=(csv); else stores=(keep decompress); fi
  for store in "${stores[@]}"; do
    # A fresh server each time: a file already published is announced again, not downloaded again.
    start_s3 garage
    config "$run/$store.toml" "$s3_port" "$queue_lines" "file_format = \"$format\"" \
      "$([[ $store == csv ]] || echo "gzip_downloads = \"$store\"")"
    consume "$run" "$store"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$format" "$store" "$wire" "$c_transfer" \
      "$(mb_s "$wire" "$c_transfer")" "$(mb_s "$csv_bytes" "$c_transfer")" "$c_stored" "$c_rss" "$c_cpu"
    stop_s3
  done
  curl -sf -X DELETE "$sim/sim/faults" >/dev/null
  rm -f "$bench/file.$format"
done

#!/usr/bin/env bash
# The consumer's streaming relay, measured on a synthetic InvoiceItem file of about 1 GiB and 8 GiB (the built-in
# catalogue's query), served by the simulator from disk:
#   1. its own ceiling: into the S3 sink (tests/bench/s3_sink.rs, an S3 endpoint that keeps nothing and checks
#      nothing costly), the consumer against `curl | aws s3 cp -` and `curl | rclone rcat`;
#   2. compressed: the consumer with gzip and with zstd (level 1) into the sink, against `curl | pigz -1` and
#      `curl | zstd -1 -T0` on the same file;
#   3. a real S3 server: the consumer and `aws s3 cp -` into Garage, with the most a relay using no CPU at all could
#      reach there (every core given to Garage and the simulator).
# Prints one markdown table; results and how to read them: docs/benchmarks.md.
#
# Usage: tests/bench/relay.sh [SIZES_GIB...]   (default: 1 8)
# Needs: what tests/run.sh installs (moto for SQS, Garage 2.5.0), rclone, pigz and zstd (Debian packages); awscli
# 1.x is installed on first use into ./.bench.
source "$(dirname "$0")/lib.sh"
if [[ $# -gt 0 ]]; then sizes=("$@"); else sizes=(1 8); fi

# baseline RUN NAME CMD...: the simulator's file through curl into CMD, timed. Sets b_secs (wall), b_rss and b_cpu
# (of CMD), b_curl (curl's CPU), s3_cpu and sim_cpu.
baseline() {
  local run=$1 name=$2 start s3_before sim_before
  shift 2
  s3_before=$(cpu_of "$s3_pid") sim_before=$(cpu_of "$sim_pid") start=$(now)
  /usr/bin/time -f '%U %S' -o "$run/$name.curl" curl -sf "$sim/v1/file/$file_id" -H "Authorization: Bearer $token" | \
    env -u AWS_CA_BUNDLE /usr/bin/time -v -o "$run/$name.time" "$@"
  b_secs=$(since "$start")
  s3_cpu=$(cpu_since "$s3_pid" "$s3_before") sim_cpu=$(cpu_since "$sim_pid" "$sim_before")
  b_rss=$(time_rss "$run/$name.time") b_cpu=$(time_cpu "$run/$name.time")
  b_curl=$(awk '{print $1 + $2}' "$run/$name.curl")
}

# The baselines' commands, for the S3 target of the moment: `aws s3 cp -` and `rclone rcat` (rclone's defaults:
# 5 MiB parts, 4 at once; --size-only because the sink keeps no modification time to compare).
aws_cp() { aws_cp=("$bench/venv/bin/aws" s3 cp - "s3://$bucket/$1" --endpoint-url "http://127.0.0.1:$s3_port" --only-show-errors); }
rclone_rcat() {
  rclone_rcat=(env RCLONE_CONFIG_SINK_TYPE=s3 RCLONE_CONFIG_SINK_PROVIDER=Other
    RCLONE_CONFIG_SINK_ENDPOINT="http://127.0.0.1:$s3_port" RCLONE_CONFIG_SINK_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"
    RCLONE_CONFIG_SINK_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" rclone rcat --size-only --log-level ERROR "sink:$bucket/$1")
}

echo "| file | S3 | tool | file bytes | seconds | MB/s | peak RSS MiB | CPU s/GB | S3 CPU s/GB | simulator CPU s/GB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
notes=()
for gib in "${sizes[@]}"; do
  run="$bench/run-$gib"; rm -rf "$run"; mkdir -p "$run"
  queue_lines=$(queues)
  start_s3 garage
  config "$run/config.toml" "$s3_port" "$queue_lines"
  export_file "$run" "$(awk -v g="$gib" -v r="$rows_per_gib" 'BEGIN {printf "%d", g * r}')" "$bench/file.csv"
  bytes=$(stat -c %s "$bench/file.csv")
  stop_s3

  start_s3 sink
  for variant in none gzip zstd; do
    config "$run/$variant.toml" "$s3_port" "$queue_lines" "" "compression = \"$variant\""
    consume "$run" "$variant"
    tool="consumer"; [[ $variant == none ]] || tool="consumer $variant -1 (stored $c_stored)"
    row "${gib} GiB | sink" "$tool" "$bytes" "$c_secs" "$c_rss" "$c_cpu" "$s3_cpu" "$sim_cpu"
    declare "secs_consumer_$variant=$c_secs" "cpu_consumer_$variant=$c_cpu"
  done
  aws_cp baseline.csv
  baseline "$run" aws "${aws_cp[@]}"
  row "${gib} GiB | sink" "\`aws s3 cp -\` (+ curl $(per_gb "$b_curl" "$bytes"))" "$bytes" "$b_secs" "$b_rss" "$b_cpu" "$s3_cpu" "$sim_cpu"
  secs_aws=$b_secs cpu_aws=$b_cpu
  rclone_rcat rclone.csv
  baseline "$run" rclone "${rclone_rcat[@]}"
  row "${gib} GiB | sink" "\`rclone rcat\` (+ curl $(per_gb "$b_curl" "$bytes"))" "$bytes" "$b_secs" "$b_rss" "$b_cpu" "$s3_cpu" "$sim_cpu"
  baseline "$run" pigz sh -c 'pigz -1 > /dev/null'
  row "${gib} GiB | -" "\`pigz -1\` (+ curl $(per_gb "$b_curl" "$bytes"))" "$bytes" "$b_secs" "$b_rss" "$b_cpu" 0 "$sim_cpu"
  secs_pigz=$b_secs
  baseline "$run" zstd sh -c 'zstd -q -1 -T0 > /dev/null'
  row "${gib} GiB | -" "\`zstd -1 -T0\` (+ curl $(per_gb "$b_curl" "$bytes"))" "$bytes" "$b_secs" "$b_rss" "$b_cpu" 0 "$sim_cpu"
  secs_zstd=$b_secs
  stop_s3
  notes+=("$(awk -v g="$gib" -v c="$secs_consumer_none" -v a="$secs_aws" -v cc="$cpu_consumer_none" -v ca="$cpu_aws" \
    -v gz="$secs_consumer_gzip" -v pg="$secs_pigz" -v zs="$secs_consumer_zstd" -v zt="$secs_zstd" 'BEGIN {
      printf "%s GiB into the sink: consumer %.2fx the throughput of aws s3 cp, CPU %.0f%% of its; gzip %.0f%% of pigz -1, zstd %.0f%% of zstd -1 -T0",
        g, a / c, 100 * cc / ca, 100 * pg / gz, 100 * zt / zs }')")

  start_s3 garage
  config "$run/garage.toml" "$s3_port" "$queue_lines"
  consume "$run" garage
  row "${gib} GiB | Garage" consumer "$bytes" "$c_secs" "$c_rss" "$c_cpu" "$s3_cpu" "$sim_cpu"
  # With every core busy, Garage and the simulator alone allow at most this many GB/s on this machine.
  bound=$(awk -v n="$(nproc)" -v s="$s3_cpu" -v m="$sim_cpu" -v b="$bytes" 'BEGIN {print n / ((s + m) / (b / 1e9))}')
  notes+=("$(awk -v g="$gib" -v c="$bound" -v b="$bytes" -v s="$c_secs" 'BEGIN {
      printf "%s GiB into Garage: a relay using no CPU at all could reach at most %.0f MB/s; the consumer reached %.0f%% of that", g, c * 1000, 100 * (b / s / 1e9) / c }')")
  stop_s3
  start_s3 garage
  aws_cp baseline.csv
  baseline "$run" garage-aws "${aws_cp[@]}"
  row "${gib} GiB | Garage" "\`aws s3 cp -\` (+ curl $(per_gb "$b_curl" "$bytes"))" "$bytes" "$b_secs" "$b_rss" "$b_cpu" "$s3_cpu" "$sim_cpu"
  stop_s3
  rm -f "$bench/file.csv"
done
printf '%s\n' "${notes[@]}"

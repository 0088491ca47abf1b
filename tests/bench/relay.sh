#!/usr/bin/env bash
# The consumer's streaming relay, measured on a synthetic InvoiceItem file of about 1 GiB and 8 GiB (the built-in
# catalogue's query), served by the simulator from disk:
#   1. its own ceiling: into the S3 sink (tests/bench/s3_sink.rs, an S3 endpoint that keeps nothing and checks
#      nothing costly), the consumer against `curl | aws s3 cp -` and `curl | rclone rcat`;
#   2. compressed: the consumer with gzip and with zstd (level 1) into the sink, against `curl | pigz -1` and
#      `curl | zstd -1 -T0` on the same file;
#   3. a real S3 server: the consumer and `aws s3 cp -` into Garage (a fresh one for each run), with the most a
#      relay using no CPU at all could reach there (every core given to Garage and the simulator).
# Every tool is timed the same way, from its trigger to its end: the consumer from the job message sent (the
# process then started) to the timestamp of its "job done" line; a pipeline from its start to its exit (curl and
# the tool's own start-up included). The tools run in turn, ROUNDS times (default 3), each round starting with the
# next tool, and each row gives the minimum, median and maximum seconds.
# Prints one markdown table and notes; results and how to read them: docs/benchmarks.md.
#
# Usage: ROUNDS=3 tests/bench/relay.sh [SIZES_GIB...]   (default: 1 8)
#        CONSUMER=path/to/consumer ...   measures that build of the consumer instead (a change's base, say)
# Needs: what tests/run.sh installs (moto for SQS, Garage 2.5.0), rclone, pigz and zstd (Debian packages); awscli
# 1.x is installed on first use into ./.bench.
source "$(dirname "$0")/lib.sh"
if [[ $# -gt 0 ]]; then sizes=("$@"); else sizes=(1 8); fi
rounds=${ROUNDS:-3}

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

# measure RUN TOOL: one timed run of TOOL; appends "seconds cpu rss s3_cpu sim_cpu stored curl_cpu" to
# RUN/TOOL.runs. Garage tools get a fresh Garage of their own.
measure() {
  local run=$1 tool=$2
  case $tool in
    garage-*) start_s3 garage; config "$run/garage.toml" "$s3_port" "$queue_lines" ;;
  esac
  case $tool in
    consumer | consumer-gzip | consumer-zstd | garage-consumer)
      consume "$run" "$(consumer_config "$tool")"
      echo "$c_secs $c_cpu $c_rss $s3_cpu $sim_cpu $c_stored 0" >>"$run/$tool.runs" ;;
    *)
      case $tool in
        aws | garage-aws) aws_cp baseline.csv; baseline "$run" "$tool" "${aws_cp[@]}" ;;
        rclone) rclone_rcat rclone.csv; baseline "$run" rclone "${rclone_rcat[@]}" ;;
        pigz) baseline "$run" pigz sh -c 'pigz -1 > /dev/null' ;;
        zstd) baseline "$run" zstd sh -c 'zstd -q -1 -T0 > /dev/null' ;;
      esac
      echo "$b_secs $b_cpu $b_rss $s3_cpu $sim_cpu - $b_curl" >>"$run/$tool.runs" ;;
  esac
  case $tool in
    garage-*) stop_s3 ;;
  esac
}

consumer_config() {
  case $1 in
    consumer) echo none ;;
    consumer-gzip) echo gzip ;;
    consumer-zstd) echo zstd ;;
    garage-consumer) echo garage ;;
  esac
}

# rounds_of RUN TOOLS...: ROUNDS rounds of the tools in turn, each round starting one tool later.
rounds_of() {
  local run=$1 round i n
  shift
  n=$#
  local tools=("$@")
  for ((round = 0; round < rounds; round++)); do
    for ((i = 0; i < n; i++)); do
      measure "$run" "${tools[$(((round + i) % n))]}"
    done
  done
}

# pick FILE N min|median|max: that statistic of the Nth column of FILE (one run a line).
pick() {
  sort -g <(cut -d' ' -f"$2" "$1") | awk -v want="$3" '{v[NR] = $1} END {
    if (want == "min") print v[1]; else if (want == "max") print v[NR]; else print v[int((NR + 1) / 2)] }'
}

# summary RUN FILE_LABEL S3 TOOL LABEL: the tool's row, from its runs.
summary() {
  local runs="$1/$4.runs" secs stored curl label=$5
  secs=$(pick "$runs" 1 median)
  stored=$(pick "$runs" 6 median)
  curl=$(pick "$runs" 7 median)
  [[ $curl == 0 ]] || label="$label (+ curl $(per_gb "$curl" "$bytes"))"
  [[ $stored == - ]] || [[ $4 == consumer || $4 == garage-consumer ]] || label="$label, stored $stored bytes"
  printf '| %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s | %s |\n' "$2" "$3" "$label" "$(wc -l <"$runs")" \
    "$(pick "$runs" 1 min)" "$secs" "$(pick "$runs" 1 max)" "$(mb_s "$bytes" "$secs")" "$(pick "$runs" 3 max)" \
    "$(per_gb "$(pick "$runs" 2 median)" "$bytes")" "$(per_gb "$(pick "$runs" 4 median)" "$bytes")" \
    "$(per_gb "$(pick "$runs" 5 median)" "$bytes")"
}

# ratios RUN A B: B's seconds over A's in each round (A's throughput over B's), as "min / median / max".
ratios() {
  paste -d' ' <(cut -d' ' -f1 "$1/$2.runs") <(cut -d' ' -f1 "$1/$3.runs") | awk '{print $2 / $1}' | sort -g |
    awk '{v[NR] = $1} END {printf "%.2fx / %.2fx / %.2fx", v[1], v[int((NR + 1) / 2)], v[NR]}'
}

echo "| file | S3 | tool | runs | seconds min / median / max | MB/s (median) | peak RSS MiB (max) | CPU s/GB | S3 CPU s/GB | simulator CPU s/GB |"
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
  done
  rounds_of "$run" consumer aws rclone
  rounds_of "$run" consumer-gzip pigz consumer-zstd zstd
  stop_s3
  rounds_of "$run" garage-consumer garage-aws

  summary "$run" "${gib} GiB" sink consumer consumer
  summary "$run" "${gib} GiB" sink aws '`aws s3 cp -`'
  summary "$run" "${gib} GiB" sink rclone '`rclone rcat`'
  summary "$run" "${gib} GiB" sink consumer-gzip 'consumer gzip -1'
  summary "$run" "${gib} GiB" - pigz '`pigz -1`'
  summary "$run" "${gib} GiB" sink consumer-zstd 'consumer zstd -1'
  summary "$run" "${gib} GiB" - zstd '`zstd -1 -T0`'
  summary "$run" "${gib} GiB" Garage garage-consumer consumer
  summary "$run" "${gib} GiB" Garage garage-aws '`aws s3 cp -`'
  notes+=("${gib} GiB, the consumer's throughput over each tool's, round by round (min / median / max): aws s3 cp into the sink $(ratios "$run" consumer aws), rclone rcat $(ratios "$run" consumer rclone); gzip over pigz -1 $(ratios "$run" consumer-gzip pigz), zstd over zstd -1 -T0 $(ratios "$run" consumer-zstd zstd); aws s3 cp into Garage $(ratios "$run" garage-consumer garage-aws)")
  # With every core busy, Garage and the simulator alone allow at most this many GB/s on this machine.
  bound=$(awk -v n="$(nproc)" -v s="$(pick "$run/garage-consumer.runs" 4 median)" \
    -v m="$(pick "$run/garage-consumer.runs" 5 median)" -v b="$bytes" 'BEGIN {print n / ((s + m) / (b / 1e9))}')
  notes+=("$(awk -v g="$gib" -v c="$bound" -v b="$bytes" -v s="$(pick "$run/garage-consumer.runs" 1 median)" 'BEGIN {
      printf "%s GiB into Garage: a relay using no CPU at all could reach at most %.0f MB/s; the consumer reached %.0f%% of that (medians)", g, c * 1000, 100 * (b / s / 1e9) / c }')")
  rm -f "$bench/file.csv"
done
printf '%s\n' "${notes[@]}"

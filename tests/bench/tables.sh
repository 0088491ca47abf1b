#!/usr/bin/env bash
# The table writer against DuckDB, on the same files in the same run (docs/benchmarks.md section 8): an InvoiceItem
# full load of ROWS rows, then DAYS daily increments of DAY_ROWS rows (80% new items, 18% updates, 2% deletions),
# applied to a Delta table by the writer's `apply` (table-bench) and merged by DuckDB into a table of its own
# database (CREATE TABLE AS, then MERGE INTO). The tools alternate: the full load, then CHUNK days at a time, each
# chunk one process per tool, so each process's peak RSS is one chunk's. Prints, per tool: the full load's seconds,
# rows/s and peak RSS; the days' seconds (min / median / max, first and last tenth) and peak RSS; then checks that
# the two tables hold the same rows, every column compared (DuckDB reading the Delta table).
#
# Usage: tests/bench/tables.sh [ROWS] [DAYS] [DAY_ROWS] [CHUNK]   (default: 20000000 200 100000 10)
# Needs: the Python venv tests/run.sh installs (duckdb and its delta extension).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
rows=${1:-20000000} days=${2:-200} day_rows=${3:-100000} chunk=${4:-10}
python="$root/.venv/bin/python"
if [[ ! -x "$python" ]]; then
  echo "bench: run ./tests/run.sh once first (it installs duckdb into .venv)" >&2
  exit 1
fi
cargo build --release --quiet -p test-support --bin table-bench
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release"
run="$root/.bench/tables"
rm -rf "$run"; mkdir -p "$run"

started=$(date +%s.%N)
"$bin/table-bench" gen "$run" "$rows" "$days" "$day_rows"
echo "files written in $(echo "$(date +%s.%N) - $started" | bc) s: $(du -sh "$run/raw" | cut -f1)"

# measure TOOL PHASE FIRST LAST: one process of TOOL applying files FIRST..=LAST.
measure() {
  local tool=$1 phase=$2 first=$3 last=$4
  local out="$run/$tool-$phase.tsv"
  if [[ $tool == delta ]]; then
    /usr/bin/time -v -o "$run/$tool-$phase.time" "$bin/table-bench" apply "$run" "$first" "$last" >>"$out"
  else
    /usr/bin/time -v -o "$run/$tool-$phase.time" "$python" tests/bench/tables_duckdb.py merge "$run" "$first" "$last" >>"$out"
  fi
  grep 'Maximum resident' "$run/$tool-$phase.time" | awk '{print $NF}' >>"$run/$tool-$phase.rss"
}
for tool in delta duckdb; do measure "$tool" full 0 0; done
for ((first = 1; first <= days; first += chunk)); do
  last=$((first + chunk - 1 < days ? first + chunk - 1 : days))
  for tool in delta duckdb; do measure "$tool" days "$first" "$last"; done
done

"$python" - "$run" "$rows" "$days" "$day_rows" <<'PY'
import statistics, sys
run, rows, days, day_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def lines(name):
    try:
        return [l.split("\t") for l in open(f"{run}/{name}").read().split("\n") if l]
    except FileNotFoundError:
        return []
def rss(name):
    return max(int(l[0]) for l in lines(name)) / 1024
print(f"\n{rows:,} rows, then {days} days of {day_rows:,}")
print("| tool | full load s | rows/s | peak RSS MiB | day s min / median / max | first tenth mean | last tenth mean | days peak RSS MiB | rows after |")
print("|---|---|---|---|---|---|---|---|---|")
for tool in ("delta", "duckdb"):
    full, each = lines(f"{tool}-full.tsv")[0], lines(f"{tool}-days.tsv")
    secs = [float(l[2]) for l in each]
    tenth = max(1, len(secs) // 10)
    label = "table writer (delta-rs)" if tool == "delta" else "DuckDB MERGE INTO"
    row = [label, f"{float(full[2]):.1f}", f"{float(full[3]):,.0f}", f"{rss(f'{tool}-full.rss'):,.0f}"]
    if secs:
        row += [f"{min(secs):.2f} / {statistics.median(secs):.2f} / {max(secs):.2f}",
                f"{statistics.mean(secs[:tenth]):.2f}", f"{statistics.mean(secs[-tenth:]):.2f}",
                f"{rss(f'{tool}-days.rss'):,.0f}", f"{int(each[-1][4]):,}"]
    else:
        row += ["-"] * 4 + [f"{int(full[4]):,}"]
    print("| " + " | ".join(row) + " |")
expire = [float(l[7]) for l in lines("delta-full.tsv") + lines("delta-days.tsv")]
print(f"expiring the replaced versions (delta, after each commit): {sum(expire):.1f} s in all, max {max(expire):.2f} s")
PY
"$python" tests/bench/tables_duckdb.py check "$run"

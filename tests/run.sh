#!/usr/bin/env bash
# Runs the whole test suite in its two tiers. First `cargo test --workspace` as on a bare checkout: the service
# tests on in-memory queues and a local-directory store. Then the real-protocol tier: it installs what the tests
# need (moto server for SQS and S3, the official Zuora Python SDK as a third-party AQuA client, and DuckDB and
# deltalake as third-party table readers into ./.venv;
# Garage, a stricter S3 server, into ./.tools), starts moto and a single-node Garage on free loopback ports, runs the
# same tests against them with the server-only ones included (`-- --include-ignored`), and stops the servers
# whatever happens. Arguments, if any, replace `--workspace` in both tiers (e.g. `-p consumer --test worker`).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
# Pinned: moto 5.2.5 is the version whose SQS/S3 behaviour docs/ and the tests were checked against; DuckDB with
# its delta extension (a package: DuckDB cannot download extensions here) and delta-rs's Python package read the
# table writer's tables (docs/tables.md).
pins=("moto[server]==5.2.5" "zuora-sdk==3.21.0" "duckdb==1.4.4" "duckdb-ext-delta==1.4.4.20260205" "deltalake==1.6.6"
  "pyarrow==26.0.1" "pytz==2025.2")

if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$venv/.pins" 2>/dev/null)" != "${pins[*]}" ]]; then
  echo "run.sh: installing ${pins[*]} into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$venv/.pins"
fi
# Garage 2.5.0 (built from crates.io, about 10 minutes the first time): S3 checks that moto does not (part
# checksums, the checksum named on create, every part and complete).
garage_bin="$root/.tools/bin/garage"
if [[ ! -x "$garage_bin" ]] || [[ "$("$garage_bin" --version 2>/dev/null)" != *":2.5.0 "* ]]; then
  echo "run.sh: installing garage 2.5.0 into $root/.tools (about 10 minutes, once)" >&2
  cargo install garage@2.5.0 --locked --no-default-features --features bundled-libs,lmdb --root "$root/.tools" --quiet
fi

cd "$root"
args=("$@")
[[ ${#args[@]} -gt 0 ]] || args=(--workspace)
# Arguments after a `--` go to the test binaries; the real-protocol tier adds --include-ignored to them.
if [[ " ${args[*]} " == *" -- "* ]]; then with_ignored=(--include-ignored); else with_ignored=(-- --include-ignored); fi
env -u ZLE_TEST_AWS_ENDPOINT -u ZLE_TEST_STRICT_S3_ENDPOINT -u ZLE_TEST_PYTHON cargo test "${args[@]}"
echo "run.sh: in-memory tier passed; now the real-protocol tier" >&2

# shellcheck source=tests/garage.sh
source "$root/tests/garage.sh"
port=$(free_port)
log=$(mktemp -t moto.XXXXXX.log)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
garage_dir=$(mktemp -d -t garage.XXXXXX)
garage_pid=""
cleanup() {
  kill "$moto_pid" $garage_pid 2>/dev/null || true
  wait "$moto_pid" $garage_pid 2>/dev/null || true
  rm -rf "$log" "$garage_dir"
}
trap cleanup EXIT INT TERM

endpoint="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  if "$venv/bin/python" -c "import urllib.request as u; u.urlopen('$endpoint/moto-api/', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "run.sh: moto server did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "run.sh: moto server on $endpoint" >&2

# Credentials Garage accepts (a GK key id, a 64-hex secret); moto accepts any.
export AWS_ACCESS_KEY_ID=GK7e57c0de7e57c0de7e57c0de AWS_SECRET_ACCESS_KEY=$(printf '7e57%.0s' {1..16}) AWS_REGION=us-east-1
garage_start "$garage_dir"
echo "run.sh: garage on http://127.0.0.1:$garage_port" >&2

export ZLE_TEST_AWS_ENDPOINT="$endpoint"
export ZLE_TEST_STRICT_S3_ENDPOINT="http://127.0.0.1:$garage_port"
export ZLE_TEST_PYTHON="$venv/bin/python"
cargo test "${args[@]}" "${with_ignored[@]}"

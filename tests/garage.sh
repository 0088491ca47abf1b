# Sourced by tests/run.sh and tests/bench/relay.sh: free loopback ports, and a single-node Garage (an S3 server) on
# them. Garage needs `garage_bin`, and AWS_ACCESS_KEY_ID (GK and 24 hex digits) and AWS_SECRET_ACCESS_KEY (64 hex
# digits) exported.

# A loopback TCP port nothing listens on.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# garage_start DIR [TOML]: starts Garage with its data under DIR (and TOML's top-level settings), with a key for the
# AWS_* credentials that may create buckets; sets garage_port and garage_pid. Exits with the server's log if it
# does not come up.
garage_start() {
  local dir=$1 settings=${2:-} rpc
  local cli=("$garage_bin" -c "$dir/garage.toml")
  garage_port=$(free_port)
  rpc=$(free_port)
  cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(printf 'c0de%.0s' {1..16})"
$settings
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$garage_port"
root_domain = ".s3.garage.localhost"
TOML
  "${cli[@]}" server >"$dir/server.log" 2>&1 &
  garage_pid=$!
  for _ in $(seq 1 100); do
    if "${cli[@]}" status >/dev/null 2>&1; then break; fi
    if ! kill -0 "$garage_pid" 2>/dev/null; then
      echo "garage did not start:" >&2
      cat "$dir/server.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  "${cli[@]}" layout assign -z dc1 -c 100G "$("${cli[@]}" node id -q | cut -d@ -f1)" >/dev/null
  "${cli[@]}" layout apply --version 1 >/dev/null
  "${cli[@]}" key import --yes -n tests "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
  "${cli[@]}" key allow --create-bucket tests >/dev/null
}

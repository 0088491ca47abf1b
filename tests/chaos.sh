#!/usr/bin/env bash
# Runs the chaos harness (tests/chaos, docs/reliability.md) in release mode: `tests/chaos.sh N` runs N random
# seeds, `tests/chaos.sh N FIRST` runs seeds FIRST..FIRST+N-1, `tests/chaos.sh --seed S` replays seed S with the
# services' logs (stamped with simulated time) on stderr. Exits non-zero if any seed fails an oracle check.
set -euo pipefail
cd "$(dirname "$0")/.."
# `cargo run`, not ./target/release/chaos: the binary cargo built, wherever CARGO_TARGET_DIR puts it.
chaos=(cargo run --release --quiet -p chaos --bin chaos --)
if [[ "${1:-}" == "--seed" ]]; then
  exec "${chaos[@]}" --seed "$2"
fi
args=(--seeds "${1:-100}")
if [[ -n "${2:-}" ]]; then
  args+=(--first "$2")
fi
exec "${chaos[@]}" "${args[@]}"

#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), from the committed seeds
# (fuzz/seeds/TARGET) and a working corpus (fuzz/corpus/TARGET, not committed). Fails on the
# first crash, leak, timeout or out-of-memory; libFuzzer leaves the input that did it in
# fuzz/artifacts/TARGET/ (turn it into a unit test). Needs the nightly toolchain and
# cargo-fuzz (installed here if missing). Longer: fuzz/run.sh 3600, or one target at a time:
# cargo +nightly fuzz run listing fuzz/corpus/listing fuzz/seeds/listing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in $(cargo +nightly fuzz list); do
    mkdir -p "fuzz/corpus/$target"
    echo "== fuzz $target for ${seconds}s"
    if cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units)' "$log" || true
    else
        tail -n 60 "$log"
        echo "fuzz target $target failed: the input is in fuzz/artifacts/$target/"
        exit 1
    fi
done

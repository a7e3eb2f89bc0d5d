#!/usr/bin/env bash
# A short coverage-guided fuzz run of every target in fuzz/ (issue 17), for
# .ci/run: each target starts from the kept corpus (tests/fuzz/corpus) and
# runs FUZZ_SECONDS (default 20) under libFuzzer with a fixed seed, a 2 GiB
# RSS cap (an allocation sized by a hostile header is a crash) and inputs of
# up to 64 KiB. A crash fails the run and names the input that caused it;
# new inputs the fuzzer finds are thrown away (only seeds, hostile headers
# and crashers are kept, see tests/fuzz/README.md).
#
# Needs the nightly toolchain, which cargo-fuzz requires: on a machine
# without one it says so and exits 0, and tests/fuzz_replay.rs (stable, in
# `cargo test --release`) still replays the corpus and a mutation pass.
# cargo-fuzz is installed from crates.io into ~/.cache/labelgen-fuzz-tools
# on first use. The first build compiles every dependency with coverage
# instrumentation into ~/.cache/labelgen-fuzz-target: about 8 minutes on 2
# cores.
#
# Usage: tests/fuzz/ci.sh [TARGET...]   (default: every target in fuzz/Cargo.toml)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${FUZZ_SECONDS:-20}"
if ! cargo +nightly --version > /dev/null 2>&1; then
    echo "fuzz: skipped, no nightly toolchain on this machine (cargo-fuzz needs one)"
    exit 0
fi
tools="$HOME/.cache/labelgen-fuzz-tools"
if ! "$tools/bin/cargo-fuzz" --version > /dev/null 2>&1; then
    cargo install --quiet --locked cargo-fuzz --version 0.13.2 --root "$tools"
fi
export PATH="$tools/bin:$PATH"
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/labelgen-fuzz-target}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml)
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd fuzz
started=$SECONDS
if ! cargo +nightly fuzz build --dev -s none --target-dir "$target_dir" > "$work/build.log" 2>&1; then
    tail -60 "$work/build.log"
    echo "fuzz: the build FAILED" >&2
    exit 1
fi
echo "fuzz: built the targets in $((SECONDS - started)) s"
for target in "${targets[@]}"; do
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    started=$SECONDS
    if ! TMPDIR="$work/$target" cargo +nightly fuzz run --dev -s none --target-dir "$target_dir" \
        "$target" "$work/$target/corpus" "../tests/fuzz/corpus/$target" -- \
        -seed=1 -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$work/$target/artifacts/" > "$work/$target/log" 2>&1; then
        tail -40 "$work/$target/log"
        for crash in "$work/$target/artifacts/"*; do
            [ -e "$crash" ] || continue
            echo "fuzz: $target crashed on $(basename "$crash") ($(wc -c < "$crash") bytes), base64:"
            base64 -w0 "$crash" | head -c 4000
            echo
        done
        echo "fuzz: $target FAILED; keep the input as tests/fuzz/corpus/$target/crash-WHAT with the fix" >&2
        exit 1
    fi
    runs=$(grep -o 'Done [0-9]* runs' "$work/$target/log" | grep -o '[0-9]*' || echo "?")
    echo "fuzz: $target ok, $runs inputs in $((SECONDS - started)) s"
done

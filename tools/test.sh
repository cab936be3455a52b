#!/usr/bin/env bash
# sluice's whole test suite, exactly as CI runs it (.ci/run):
#   install missing dependencies (tools/install-deps.sh), cargo fmt --check, clippy with
#   -D warnings, every test (cargo nextest, else cargo test), doc tests, a ~10 s fuzz smoke
#   run of every cargo-fuzz target under */fuzz, and the micro-benchmark smoke run.
# Every step runs even if an earlier one failed (except install-deps); the exit status is
# non-zero if any failed, and the last line sums up.
#
# Everything it starts, including the brokers tests spawn, lives in one session of its own;
# on exit, failure or Ctrl-C that session is stopped (SIGTERM, then SIGKILL after 10 s).
set -euo pipefail

root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
self="$root/tools/test.sh"

# Pids of the live (non-zombie) processes in session $1.
session_pids() {
    local sid="$1" f stat rest state ppid pgrp session
    for f in /proc/[0-9]*/stat; do
        { stat="$(<"$f")"; } 2>/dev/null || continue
        rest="${stat##*) }"
        read -r state ppid pgrp session _ <<<"$rest"
        if [[ "$session" == "$sid" && "$state" != Z ]]; then
            f="${f#/proc/}"
            echo "${f%/stat}"
        fi
    done
}

stop_session() {
    local sid="$1" pids i
    mapfile -t pids < <(session_pids "$sid")
    ((${#pids[@]})) || return 0
    kill -CONT "${pids[@]}" 2>/dev/null || true # a paused broker cannot act on SIGTERM
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        mapfile -t pids < <(session_pids "$sid")
        ((${#pids[@]})) || return 0
        sleep 0.1
    done
    echo "test.sh: killing ${#pids[@]} process(es) that ignored SIGTERM: ${pids[*]}" >&2
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

if [[ "${SLUICE_TEST_INNER:-}" != 1 ]]; then
    # The outer half: run the suite as the leader of a new session and clean that session up.
    # (A process group would not do: nextest puts each test in a group of its own.)
    SLUICE_TEST_INNER=1 setsid "$BASH" "$self" "$@" &
    leader=$!
    on_signal() {
        trap '' INT TERM HUP
        echo "test.sh: interrupted; stopping everything the suite started" >&2
        stop_session "$leader"
        wait "$leader" 2>/dev/null || true
        exit 130
    }
    trap on_signal INT TERM HUP
    rc=0
    wait "$leader" || rc=$?
    # Whatever outlived the suite: a broker of a test that crashed, a hung client...
    stop_session "$leader"
    exit "$rc"
fi

# --- The inner half: the suite itself. ------------------------------------------------------
cd "$root"
if [[ "${CI:-}" == true || "${CI:-}" == 1 ]]; then
    export CARGO_TERM_COLOR=never
    locked=(--locked)
else
    locked=()
fi
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

started=$SECONDS
results=()
failed=()

# step <name> <command...>: runs the command, records ok/FAIL and its duration.
step() {
    local name="$1" t0=$SECONDS rc=0
    shift
    echo
    echo "=== test.sh: $name: $*"
    "$@" || rc=$?
    if ((rc == 0)); then
        results+=("$name ok $((SECONDS - t0))s")
    else
        results+=("$name FAILED $((SECONDS - t0))s")
        failed+=("$name")
        echo "=== test.sh: $name FAILED (exit $rc)" >&2
    fi
}

skip() {
    results+=("$1 skipped ($2)")
    echo
    echo "=== test.sh: $1 skipped: $2"
}

summary() {
    local total=$((SECONDS - started)) joined
    joined="$(printf '%s, ' "${results[@]}")"
    joined="${joined%, }"
    echo
    if ((${#failed[@]})); then
        echo "test.sh: FAILED (${failed[*]}) in $((total / 60))m$((total % 60))s: $joined"
    else
        echo "test.sh: PASSED in $((total / 60))m$((total % 60))s: $joined"
    fi
}

interrupted() {
    trap '' INT TERM HUP
    failed+=("interrupted")
    summary
    exit 143
}
trap interrupted INT TERM HUP

fuzz_dirs() {
    find "$root" \( -path "$root/target" -o -path '*/fuzz/target' -o -path '*/.git' \) -prune \
        -o -type f -path '*/fuzz/Cargo.toml' -print | sed 's|/Cargo.toml$||' | sort
}

# cargo-fuzz wants nightly (for AddressSanitizer). Where only stable exists (rustup cannot
# fetch toolchains on every machine), the same coverage-guided libFuzzer run works on stable
# with RUSTC_BOOTSTRAP=1 and no sanitizer; panics, hangs and allocation limits are still
# caught, memory errors in unsafe code are not (the codecs have no unsafe code).
fuzz_cmd=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz_cmd=(cargo +nightly fuzz)
    fuzz_run_flags=()
else
    fuzz_cmd=(env RUSTC_BOOTSTRAP=1 cargo +stable fuzz)
    fuzz_run_flags=(-s none)
fi

fuzz_smoke() {
    local dir crate targets target bad=0
    echo "fuzzing with: ${fuzz_cmd[*]} ${fuzz_run_flags[*]}"
    for dir in "$@"; do
        crate="$(dirname "$dir")"
        if ! targets="$(cd "$crate" && "${fuzz_cmd[@]}" list --fuzz-dir "$dir")"; then
            echo "test.sh: cargo fuzz list failed in $dir" >&2
            bad=1
            continue
        fi
        for target in $targets; do
            echo "--- fuzz ${dir#"$root"/} $target (10 s)"
            if ! (cd "$crate" && "${fuzz_cmd[@]}" run "${fuzz_run_flags[@]}" --fuzz-dir "$dir" "$target" -- \
                -max_total_time=10 -print_final_stats=1); then
                echo "test.sh: fuzz target $target in ${dir#"$root"/} FAILED" >&2
                bad=1
            fi
        done
    done
    return "$bad"
}

bench_micro_smoke() {
    # A smoke run keeps the micro-benchmarks from rotting; it measures nothing, so the
    # dev profile (already built by the tests) is enough. Real numbers: docs/benchmarks.md.
    cargo run "${locked[@]}" -p sluice-bench -- micro --smoke
}

echo "=== test.sh: install-deps"
if ! "$root/tools/install-deps.sh"; then
    failed+=("install-deps")
    results+=("install-deps FAILED")
    summary
    exit 1
fi

step fmt cargo fmt --all --check
step clippy cargo clippy "${locked[@]}" --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    step tests cargo nextest run "${locked[@]}" --workspace --no-fail-fast
else
    step tests cargo test "${locked[@]}" --workspace --no-fail-fast
fi
step doctests cargo test "${locked[@]}" --workspace --doc

mapfile -t dirs < <(fuzz_dirs)
if ((${#dirs[@]} == 0)); then
    skip fuzz "no */fuzz crates"
else
    step fuzz fuzz_smoke "${dirs[@]}"
fi

step bench-smoke bench_micro_smoke

summary
((${#failed[@]} == 0))

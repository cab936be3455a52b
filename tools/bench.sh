#!/usr/bin/env bash
# sluice's standard benchmark suite in one command:
#
#   tools/bench.sh quick   # a few minutes, for every change
#   tools/bench.sh full    # adds idle runs of 100k and 1M connections, three runs of
#                          # everything, longer fan-out runs and fan-out ramps to the highest
#                          # sustained rate, a 10k-connection storm and failovers of 10k and
#                          # 100k sessions
#
# quick: micro-benchmarks (sluice-bench micro, the subscription-index bench), kafka-wire vs
# rdkafka (3 runs), MQTT clients via sluice vs rdkafka into the same tansu (max throughput,
# then latency at 50 % of rdkafka's max, timed at the acknowledgement and at an independent
# Kafka consumer on both sides; 1 round, 3 in full), MQTT publish closed loop and 20k msgs/s against tansu and the discard
# sink (20k/s into tansu also timed end to end at an independent Kafka consumer), the same
# clients closed loop as length-prefixed records, raw WebSocket messages and HTTP produce
# calls against the discard sink, 10k idle
# connections (sluice and mosquitto), fan-out to 1,000 subscribers at QoS 0
# and 1 (5 s each), a reconnect storm of 2,000 connections (sluice clean and persistent,
# mosquitto and rumqttd clean) and a failover of 1,000 persistent sessions.
#
# Results go to bench/results/<UTC date>/ (a later run on the same day replaces them): the
# JSON of every step, meta.env (machine, commit, load before and after), steps.log, and
# report.md with latency.svg, failover.svg, idle-memory.svg and throughput.svg, written by
# `sluice-bench report`. Needs what tools/install-deps.sh installs (tansu, mosquitto);
# installs rumqttd 0.20 itself when missing (`cargo install rumqttd --version 0.20.0`,
# without --locked; or RUMQTTD_BIN names one). Builds the release binaries with cargo;
# safe to rerun.
#
# Environment: SLUICE_BIN names a sluice binary to measure (then only sluice-bench is
# built); BENCH_OUT overrides the results directory; IDLE_LARGE is the full profile's large
# idle run over 6 processes (default 100000 connections); IDLE_MILLION its largest, the
# brief's target (default 1000000; 0 skips it; skipped when less than 16 GiB of memory is
# available, for sluice, the load generators and the kernel together);
# FAILOVER_LARGE is the full profile's large failover (default 100000 sessions, the brief's
# target); RUMQTTD_BIN names a rumqttd binary (default: rumqttd on PATH).
set -euo pipefail

root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$root"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$cargo_home/bin:$PATH"

profile="${1:-}"
case "$profile" in
quick | full) ;;
*)
    echo "usage: tools/bench.sh quick|full" >&2
    exit 2
    ;;
esac

say() { echo "bench.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

command -v tansu >/dev/null || [[ -n "${TANSU_BIN:-}" ]] ||
    die "no tansu on PATH: run tools/install-deps.sh first"
command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] ||
    die "no mosquitto: run tools/install-deps.sh first"
# rumqttd, the second MQTT peer, is the suite's alone: installed here, once, into cargo's
# own bin directory (built in a directory of its own, whatever CARGO_TARGET_DIR says).
if [[ -z "${RUMQTTD_BIN:-}" ]] && ! command -v rumqttd >/dev/null; then
    say "installing rumqttd 0.20.0 into $cargo_home/bin (a few minutes, once)"
    env -u CARGO_TARGET_DIR cargo install --quiet --root "$cargo_home" \
        rumqttd --version 0.20.0 ||
        die "cannot install rumqttd (set RUMQTTD_BIN to a rumqttd binary)"
fi
if [[ -n "${RUMQTTD_BIN:-}" ]]; then
    command -v "$RUMQTTD_BIN" >/dev/null || die "RUMQTTD_BIN=$RUMQTTD_BIN is not a command"
fi
export PATH="$PATH:/usr/sbin"

# --- Build ----------------------------------------------------------------------------------
if [[ -n "${SLUICE_BIN:-}" ]]; then
    [[ -x "$SLUICE_BIN" ]] || die "SLUICE_BIN=$SLUICE_BIN is not an executable"
    say "building sluice-bench (release); measuring SLUICE_BIN=$SLUICE_BIN"
    cargo build --release --quiet -p sluice-bench
else
    say "building sluice-bench and sluice (release)"
    cargo build --release --quiet -p sluice-bench -p sluice
fi
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
bench="$target_dir/release/sluice-bench"
sluice_bin="${SLUICE_BIN:-$target_dir/release/sluice}"
export SLUICE_BIN="$sluice_bin"

# --- Results directory and what the machine is --------------------------------------------
# Whether the tree is committed, read before the results directory is made or emptied
# (a new results directory under bench/results/ is itself an untracked change).
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
tree=clean
[[ -z "$(git status --porcelain 2>/dev/null)" ]] || tree="uncommitted changes"
out="${BENCH_OUT:-$root/bench/results/$(date -u +%F)}"
mkdir -p "$out"
rm -f "$out"/*.json "$out/report.md" "$out/latency.svg" "$out/failover.svg" "$out/idle-memory.svg" "$out/throughput.svg" "$out/steps.log" \
    "$out/subscriptions.txt"

load() { cut -d' ' -f1-3 /proc/loadavg; }
busiest() {
    ps -eo pcpu=,comm= --sort=-pcpu | head -3 | awk '{printf "%s%s %s%%", (NR > 1 ? ", " : ""), $2, $1}'
}
cpu_model="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
[[ -n "$cpu_model" ]] || cpu_model="$(sed -n 's/^model name\t*: //p' /proc/cpuinfo | head -1)"
mem_gib="$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
os="$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}")"
{
    echo "profile=$profile"
    echo "started=$(date -u '+%F %T UTC')"
    echo "commit=$commit"
    echo "tree=$tree"
    echo "sluice_bin=$sluice_bin"
    echo "cpu_model=$cpu_model"
    echo "nproc=$(nproc)"
    echo "mem_gib=$mem_gib"
    echo "kernel=$(uname -r)"
    echo "os=$os"
    echo "load_before=$(load)"
    echo "others_before=$(busiest)"
} >"$out/meta.env"

# --- Steps --------------------------------------------------------------------------------
# `steps` below runs twice: first only counting (so that each step can say "[n/N]"), then
# for real. Within a step, sluice-bench draws progress bars on a terminal and prints a
# progress line every few seconds otherwise.
started=$SECONDS
n=0
total=0
counting=1
# step <name> <command...>: runs one step, logging its time and the load around it.
step() {
    if ((counting)); then
        total=$((total + 1))
        return 0
    fi
    local name="$1" t0=$SECONDS
    shift
    n=$((n + 1))
    say "[$n/$total] $name ($(((SECONDS - started) / 60)) min so far; load $(load))"
    echo "$(date -u +%T) start $name; load $(load)" >>"$out/steps.log"
    "$@"
    echo "$(date -u +%T) done $name in $((SECONDS - t0)) s; load $(load)" >>"$out/steps.log"
}

million="${IDLE_MILLION:-1000000}"
avail_gib="$(awk '/^MemAvailable:/ { print int($2 / 1048576) }' /proc/meminfo)"
if [[ "$profile" == quick ]]; then
    runs=1 micro_s=0.5 publish_s=10 fanout_runs=1 fanout_s=5 storm_n=2000 failover_n=1000
    compare_rounds=1 compare_s=3
else
    runs=3 micro_s=2 publish_s=10 fanout_runs=3 fanout_s=10 storm_n=10000 failover_n=10000
    compare_rounds=3 compare_s=5
fi

steps() {
    step "micro-benchmarks" "$bench" micro --seconds "$micro_s" --out "$out/micro.json"
    step "subscription index benchmark" \
        bash -c 'cargo bench --quiet -p sluice-bench --bench subscriptions -- --seconds "$1" >"$2"' \
        _ "$micro_s" "$out/subscriptions.txt"
    step "kafka-wire vs rdkafka, 3 runs" \
        "$bench" produce --runs 3 --records 1000000 --out "$out/produce.json"
    step "MQTT via sluice vs rdkafka, same tansu: max and 50 % load, $compare_rounds round(s)" \
        "$bench" compare --rounds "$compare_rounds" --max-seconds "$compare_s" --seconds "$compare_s" \
        --kafka-consumer --out "$out/compare.json"
    if [[ "$profile" == full ]]; then
        # Lower fixed rates, without the consumer's load: up to where the added latency
        # stays within the target (the report lists them under the 50 % row).
        step "MQTT via sluice vs rdkafka at 10,000 and 50,000 records/s, 3 rounds" \
            "$bench" compare --rounds 3 --max-seconds 3 --seconds 5 --rates 10000,50000 \
            --out "$out/compare-rates.json"
    fi
    for ((run = 1; run <= runs; run++)); do
        for load in max 20000; do
            for sink in tansu discard; do
                label="$load"
                extra=()
                [[ "$load" == 20000 ]] && label=20k
                # End to end at an independent Kafka consumer, where Kafka stores the records.
                [[ "$load" == 20000 && "$sink" == tansu ]] && extra=(--kafka-consumer)
                step "publish $label vs $sink (run $run/$runs)" \
                    "$bench" publish --clients 100 --rate "$load" --duration "$publish_s" --sink "$sink" \
                    "${extra[@]}" --out "$out/publish-$label-$sink-$run.json"
            done
        done
    done
    for ((run = 1; run <= runs; run++)); do
        # The same clients' records over sluice's length-prefixed listener, as raw
        # WebSocket messages and as HTTP produce calls (pipelined), each answered once
        # Kafka has it, as PUBACKs are.
        for wire in framed ws http; do
            step "publish max, $wire records, vs discard (run $run/$runs)" \
                "$bench" publish --wire "$wire" --clients 100 --rate max --duration "$publish_s" \
                --sink discard --out "$out/publish-$wire-max-discard-$run.json"
        done
    done
    for ((run = 1; run <= runs; run++)); do
        for peer in mosquitto rumqttd; do
            step "publish max to peer $peer (run $run/$runs)" \
                "$bench" publish --clients 100 --rate max --duration "$publish_s" --peer "$peer" \
                --out "$out/publish-max-$peer-$run.json"
        done
    done
    step "idle 10k (sluice, mosquitto and rumqttd)" \
        "$bench" idle --connections 10000 --mosquitto-connections 10000 --rumqttd-connections 10000 \
        --out "$out/idle-10k.json"
    step "reconnect storm, $storm_n connections" \
        "$bench" storm --connections "$storm_n" --runs "$runs" --out "$out/storm.json"
    step "failover, $failover_n persistent sessions" \
        "$bench" failover --sessions "$failover_n" --runs "$runs" --out "$out/failover-$failover_n.json"
    for qos in 0 1; do
        step "fan-out QoS $qos, 1,000 subscribers" \
            "$bench" fanout --subscribers 1000 --rate 1000 --qos "$qos" --runs "$fanout_runs" \
            --duration "$fanout_s" --out "$out/fanout-qos$qos.json"
    done
    if [[ "$profile" == full ]]; then
        large="${IDLE_LARGE:-100000}"
        # One sluice process (one shard) and one load generator per 17k connections: 20k open
        # files per process here.
        step "idle $large (sluice)" \
            "$bench" idle --connections "$large" --per-process 17000 --sluice-shards 1 \
            --connect-rate 5000 --mosquitto-connections 0 --out "$out/idle-large.json"
        failover_large="${FAILOVER_LARGE:-100000}"
        # 2 shards per process (7 processes at 100k) and 1,000 persistent CONNECTs/s, as
        # measured on 2026-11-22 (docs/benchmarks.md, "Session records in few batches"): 100k
        # set up and failed over in 4.7-5.3 s. A client whose first CONNECT got no CONNACK retries it (--setup-deadline),
        # as a real one would; the failover is measured from the kill regardless. Not fatal: a
        # loaded machine can still stop the setup.
        step "failover, $failover_large persistent sessions" \
            "$bench" failover --sessions "$failover_large" --connect-rate 1000 \
            --timeout 60 --setup-deadline 60 --out "$out/failover-$failover_large.json" ||
            say "the failover of $failover_large sessions did not complete (see docs/benchmarks.md)"
        step "fan-out ramp QoS 0" \
            "$bench" fanout --subscribers 1000 --rate 1000,2000,3000,4000,5000,6000 --qos 0 \
            --duration "$fanout_s" --out "$out/fanout-ramp-qos0.json"
        step "fan-out ramp QoS 1" \
            "$bench" fanout --subscribers 1000 --rate 500,1000,1500,2000,3000 --qos 1 \
            --duration "$fanout_s" --out "$out/fanout-ramp-qos1.json"
        # Last, as its million sockets take a while to go: the brief's million idle
        # connections, as in docs/benchmarks.md ("A million connections on one machine"): 59
        # sluice processes of one shard and 59 load generators, 2,500 connections/s, about 7
        # minutes to connect and 11-13 GB of memory at the peak.
        if ((million > 0 && avail_gib < 16)); then
            ((counting)) || say "skipping idle $million: $avail_gib GiB of memory available, it needs about 16"
        elif ((million > 0)); then
            step "idle $million (sluice)" \
                "$bench" idle --connections "$million" --per-process 17000 --sluice-shards 1 \
                --connect-rate 2500 --mosquitto-connections 0 --out "$out/idle-million.json"
        fi
    fi
}
steps
counting=0
steps

{
    echo "finished=$(date -u '+%F %T UTC')"
    echo "load_after=$(load)"
} >>"$out/meta.env"
"$bench" report --dir "$out"
say "done in $(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s: $out/report.md"

#!/usr/bin/env bash
# Brings up a local sluice playground and shows a message arriving in Kafka:
#   1. installs missing dependencies (tools/install-deps.sh);
#   2. starts tansu in memory on 127.0.0.1:9092 and creates the topic `mqtt-messages`;
#   3. runs kafka-wire's `demo` example against it (once that example exists);
#   4. tails the topic with an independent consumer (confluent-kafka) until Ctrl-C.
# Ctrl-C stops everything it started.
set -euo pipefail

root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
port=9092
bootstrap="127.0.0.1:$port"
topic=mqtt-messages
partitions=1 # as the demo example creates it (it reads partition 0 back)

say() { echo "up.sh: $*" >&2; }

"$root/tools/install-deps.sh"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
python="${SLUICE_VENV:-${SLUICE_CACHE:-$HOME/.cache/sluice}/venv}/bin/python"
tansu="${TANSU_BIN:-$(command -v tansu)}"

if ! "$python" - "$port" <<'EOF'; then
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    sys.exit(f"{e}")
EOF
    say "error: port $port on 127.0.0.1 is already in use (another broker?); stop whatever holds it:"
    ss -ltnp "sport = :$port" >&2 2>/dev/null || true
    exit 1
fi

workdir="$(mktemp -d -t sluice-up.XXXXXX)"
pids=()
cleanup() {
    trap '' INT TERM
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting tansu on $bootstrap (log: $workdir/tansu.log)"
(cd "$workdir" && exec "$tansu" broker \
    --listener-url "tcp://$bootstrap" \
    --advertised-listener-url "tcp://$bootstrap" \
    --storage-engine memory://tansu/) >"$workdir/tansu.log" 2>&1 &
pids+=($!)

kafka() { # <script> <args...>: an independent client against the playground broker
    local script="$1"
    shift
    "$python" -B -u "$root/tools/kafka/$script" --bootstrap "$bootstrap" "$@"
}

if ! kafka admin.py topics --timeout 15 >/dev/null; then
    say "error: tansu did not come up; its log:"
    cat "$workdir/tansu.log" >&2
    exit 1
fi
kafka admin.py create-topic --topic "$topic" --partitions "$partitions" --timeout 15
say "created topic $topic ($partitions partitions)"

if [[ -f "$root/kafka-wire/examples/demo.rs" || -f "$root/kafka-wire/examples/demo/main.rs" ]]; then
    say "running kafka-wire's demo example"
    (cd "$root" && cargo run --release -p kafka-wire --example demo -- --bootstrap "$bootstrap")
else
    say "kafka-wire has no demo example yet; produce something yourself, e.g.:"
    say "  echo '{\"value\": \"$(printf hello | base64)\"}' | $python -B $root/tools/kafka/produce.py --bootstrap $bootstrap --topic $topic"
fi

say "tailing $topic with confluent-kafka from the beginning; Ctrl-C stops everything"
kafka consume.py --topic "$topic" --follow --format text &
pids+=($!)
wait "${pids[-1]}"

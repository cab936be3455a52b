#!/usr/bin/env bash
# Brings up a local sluice playground and shows a message arriving in Kafka:
#   1. installs missing dependencies (tools/install-deps.sh);
#   2. starts tansu in memory on 127.0.0.1:9092;
#   3. builds and starts sluice on its embedded default config (MQTT on 1883, admin on 9100),
#      which creates the topic `mqtt-messages`;
#   4. publishes a message with mosquitto_pub (MQTT 5, QoS 1: acknowledged once Kafka has it);
#   5. tails the topic with an independent consumer (confluent-kafka) until Ctrl-C.
# Ctrl-C stops everything it started.
set -euo pipefail

root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
port=9092
bootstrap="127.0.0.1:$port"
topic=mqtt-messages

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
# Stops what was started in reverse order, each before the next: the consumer, then sluice
# (whose graceful shutdown still sends its last batches to the broker), then tansu.
cleanup() {
    trap '' INT TERM
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
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
say "building sluice (release)"
(cd "$root" && cargo build --release -q -p sluice)
say "starting sluice with its embedded default config (log: $workdir/sluice.log)"
"$root/target/release/sluice" --bootstrap-server "$bootstrap" >"$workdir/sluice.out" 2>"$workdir/sluice.log" &
pids+=($!)
for _ in $(seq 1 300); do
    grep -q '"listening"' "$workdir/sluice.out" 2>/dev/null && break
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
        say "error: sluice exited; its log:"
        cat "$workdir/sluice.log" >&2
        exit 1
    fi
    sleep 0.1
done
if ! grep -q '"listening"' "$workdir/sluice.out"; then
    say "error: sluice did not start listening within 30 s; its log:"
    cat "$workdir/sluice.log" >&2
    exit 1
fi
say "sluice is up: $(cat "$workdir/sluice.out")"
say "publishing: mosquitto_pub -V mqttv5 -q 1 -h 127.0.0.1 -p 1883 -t sensors/room-1 -m '{\"temp\": 21.5}'"
mosquitto_pub -V mqttv5 -q 1 -h 127.0.0.1 -p 1883 -i up-demo -t sensors/room-1 -m '{"temp": 21.5}'
say "publish as much as you like (any MQTT client, port 1883); metrics: curl http://127.0.0.1:9100/metrics"

say "tailing $topic with confluent-kafka from the beginning; Ctrl-C stops everything"
# Started directly, not through `kafka`, so that the pid stopped at the end is python's own.
"$python" -B -u "$root/tools/kafka/consume.py" --bootstrap "$bootstrap" \
    --topic "$topic" --follow --format text &
pids+=($!)
wait "${pids[-1]}"

"""MQTT clients that sit idle long enough for sluice to park their connections, then need
them (paho-mqtt 2.x, MQTT 5, plus one raw-socket MQTT 3.1.1 client).

usage: park_clients.py HOST PORT
Connects, each on its own connection: `sub` (subscribes to park/+ at QoS 1), `pub`,
`pinger` (keepalive 1 s: a PINGREQ every second), `owner` (client id park-owner) and
`silent` (raw socket, keepalive 1 s, then never sends again). Prints {"event": "ready"}.

Then reads commands on stdin:
- `publish N`: `pub` publishes N QoS 1 messages park/0..N-1 (payload "m-i") and waits for
  every PUBACK; prints {"event": "published"} and, once `sub` has them all or 30 s passed,
  {"event": "received", "payloads": [...]}.
- `takeover`: a new connection with client id park-owner; prints {"event": "taken_over",
  "reason": R} when the old one is disconnected (R: its DISCONNECT reason code).
- `status`: prints {"event": "status", "pinger_disconnects": n, "silent_closed_after_s": s}.
- `await-shutdown`: waits until `sub` is disconnected by the server; prints
  {"event": "shutdown", "reason": R}.
Every connection's unexpected disconnects are counted; nothing reconnects.
"""
import json
import socket
import struct
import sys
import threading
import time

import paho.mqtt.client as mqtt

host, port = sys.argv[1], int(sys.argv[2])


def emit(**event):
    print(json.dumps(event), flush=True)


def client(client_id, keepalive=60):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    c.disconnects = []
    connected = threading.Event()
    c.on_connect = lambda cl, u, f, rc, p: connected.set()
    c.on_disconnect = lambda cl, u, f, rc, p: c.disconnects.append(rc.value)
    c.connect(host, port, keepalive=keepalive)
    c.loop_start()
    if not connected.wait(30):
        raise SystemExit(f"{client_id}: no CONNACK within 30 s")
    return c


received = []
all_received = threading.Event()
expected = [0]


def on_message(cl, userdata, msg):
    received.append(msg.payload.decode())
    if len(received) >= expected[0] > 0:
        all_received.set()


sub = client("park-sub")
sub.on_message = on_message
subscribed = threading.Event()
sub.on_subscribe = lambda cl, u, mid, rcs, p: subscribed.set()
sub.subscribe("park/+", qos=1)
if not subscribed.wait(30):
    raise SystemExit("sub: no SUBACK within 30 s")
pub = client("park-pub")
pinger = client("park-pinger", keepalive=1)
owner = client("park-owner")


def mqtt311_connect(client_id, keepalive):
    """A CONNECT packet, MQTT 3.1.1, clean session."""
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02" + struct.pack(">H", keepalive)
    payload = struct.pack(">H", len(cid)) + cid
    body = var + payload
    return bytes([0x10, len(body)]) + body


silent = socket.create_connection((host, port))
silent.sendall(mqtt311_connect("park-silent", 1))
connack = silent.recv(4)
if connack[:1] != b"\x20":
    raise SystemExit(f"silent: expected CONNACK, got {connack!r}")
silent_connected_at = time.monotonic()
silent_closed_after = [None]


def watch_silent():
    silent.settimeout(60)
    try:
        while silent.recv(64):
            pass
    except OSError:
        pass
    silent_closed_after[0] = round(time.monotonic() - silent_connected_at, 2)


threading.Thread(target=watch_silent, daemon=True).start()
emit(event="ready")

for line in sys.stdin:
    command = line.split()
    if not command:
        continue
    if command[0] == "publish":
        n = int(command[1])
        expected[0] = n
        infos = [pub.publish(f"park/{i}", f"m-{i}", qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(30)
        emit(event="published", acked=sum(1 for i in infos if i.is_published()))
        all_received.wait(30)
        emit(event="received", payloads=sorted(received))
    elif command[0] == "takeover":
        taken = threading.Event()
        owner.on_disconnect = lambda cl, u, f, rc, p: (owner.disconnects.append(rc.value), taken.set())
        second = client("park-owner")
        taken.wait(30)
        emit(event="taken_over", reason=owner.disconnects[-1] if owner.disconnects else None)
    elif command[0] == "status":
        emit(event="status", pinger_disconnects=len(pinger.disconnects),
             silent_closed_after_s=silent_closed_after[0])
    elif command[0] == "await-shutdown":
        deadline = time.monotonic() + 30
        while not sub.disconnects and time.monotonic() < deadline:
            time.sleep(0.05)
        emit(event="shutdown", reason=sub.disconnects[0] if sub.disconnects else None)
        break

"""Many MQTT 5 clients with persistent sessions (paho-mqtt 2.x) that ride out a failover.

usage: failover_clients.py HOST PORT PREFIX N MESSAGES
Connects clients PREFIX-0 .. PREFIX-(N-1) (clean start 0, session expiry 300 s, automatic
reconnect), each subscribed at QoS 1 to fo/PREFIX-i/#. Prints {"event": "ready"} once all
are subscribed, then waits until every client has received the payloads m-0 .. m-(MESSAGES-1)
at least once, and prints {"event": "done", "reconnects": R, "duplicates": D, "seconds": S}
where S is the time from the first disconnect to the last message. Exits 1 after 120 s.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port, prefix, n, messages = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
lock = threading.Lock()
subscribed = set()
received = {i: set() for i in range(n)}
duplicates = 0
reconnects = 0
first_disconnect = None
last_message = None
all_done = threading.Event()
ready = threading.Event()


def emit(**event):
    print(json.dumps(event), flush=True)


def make(i):
    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            return
        if not flags.session_present:
            client.subscribe(f"fo/{prefix}-{i}/#", qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        with lock:
            subscribed.add(i)
            if len(subscribed) == n:
                ready.set()

    def on_message(client, userdata, message):
        global duplicates, last_message
        with lock:
            payload = message.payload.decode()
            if payload in received[i]:
                duplicates += 1
            received[i].add(payload)
            last_message = time.monotonic()
            if all(len(r) >= messages for r in received.values()):
                all_done.set()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        global reconnects, first_disconnect
        with lock:
            reconnects += 1
            if first_disconnect is None:
                first_disconnect = time.monotonic()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-{i}", protocol=mqtt.MQTTv5)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    client.connect(host, port, keepalive=30, clean_start=False, properties=props)
    client.loop_start()
    return client


clients = [make(i) for i in range(n)]
if not ready.wait(60):
    sys.exit("not all clients subscribed")
emit(event="ready")
ok = all_done.wait(120)
with lock:
    seconds = (last_message - first_disconnect) if first_disconnect and last_message else 0
    emit(event="done" if ok else "timeout", reconnects=reconnects, duplicates=duplicates,
         seconds=round(seconds, 3), missing={i: messages - len(r) for i, r in received.items() if len(r) < messages})
for c in clients:
    c.disconnect()
    c.loop_stop()
sys.exit(0 if ok else 1)

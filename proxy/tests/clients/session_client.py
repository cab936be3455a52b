"""An MQTT 5 client with a persistent session (paho-mqtt 2.x), for session tests.

usage: session_client.py HOST PORT CLIENT_ID MODE [ARGS]
  subscribe FILTER COUNT   connect (clean start 0, session expiry 300 s), subscribe at QoS 1,
                           receive COUNT messages, disconnect
  noack FILTER COUNT       like subscribe, but never acknowledge (the messages stay in
                           flight, to be resent with DUP when the session resumes)
  resume COUNT             connect (clean start 0) without subscribing, receive COUNT
                           messages, disconnect
  hold                     connect (clean start 0) and stay until the server disconnects
Prints one JSON object per line: {"event": "connected", "session_present": bool},
{"event": "subscribed"}, {"event": "message", "topic", "payload", "qos", "mid", "dup",
"expiry"} (expiry: the Message Expiry Interval left, or null),
{"event": "disconnected", "reason": int}. Exits 0 once done, 1 after 60 s.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port, client_id, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
args = sys.argv[5:]
done = threading.Event()
count = int(args[-1]) if mode in ("subscribe", "noack", "resume") else 0
received = 0


def emit(**event):
    print(json.dumps(event), flush=True)


def on_connect(client, userdata, flags, reason_code, properties):
    emit(event="connected", session_present=bool(flags.session_present), reason=reason_code.value)
    if mode in ("subscribe", "noack"):
        client.subscribe(args[0], qos=1)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    emit(event="subscribed", codes=[c.value for c in reason_codes])


def on_message(client, userdata, message):
    global received
    expiry = getattr(message.properties, "MessageExpiryInterval", None)
    emit(event="message", topic=message.topic, payload=message.payload.decode(), qos=message.qos,
         mid=message.mid, dup=bool(message.dup), expiry=expiry)
    received += 1
    # Acknowledge explicitly, so the PUBACK is queued before the DISCONNECT.
    if mode != "noack":
        client.ack(message.mid, message.qos)
    if received == count:
        client.disconnect()


def on_disconnect(client, userdata, flags, reason_code, properties):
    emit(event="disconnected", reason=reason_code.value)
    done.set()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.on_disconnect = on_disconnect
client.manual_ack_set(True)
props = Properties(PacketTypes.CONNECT)
props.SessionExpiryInterval = 300
client.connect(host, port, keepalive=30, clean_start=False, properties=props)
client.loop_start()
ok = done.wait(60)
client.loop_stop()
sys.exit(0 if ok else 1)

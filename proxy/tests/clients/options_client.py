"""MQTT 5 subscription options (paho-mqtt 2.x): no local, retain as published, and a
subscription identifier.

usage: options_client.py HOST PORT
Subscribes to opt/# (QoS 1, no local, retain as published, subscription identifier 42),
prints {"event": "ready"}, publishes "own" to opt/x itself, prints {"event": "published"},
then records every message until one with payload "plain" arrives and prints
{"event": "done", "messages": [{"payload", "retain", "ids"}, ...]}. Exits 1 after 60 s.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

host, port = sys.argv[1], int(sys.argv[2])
subscribed = threading.Event()
done = threading.Event()
messages = []


def on_connect(client, userdata, flags, reason_code, properties):
    props = Properties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = 42
    options = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True)
    client.subscribe("opt/#", options=options, properties=props)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    subscribed.set()


def on_message(client, userdata, message):
    ids = getattr(message.properties, "SubscriptionIdentifier", []) if message.properties else []
    messages.append({"payload": message.payload.decode(), "retain": int(message.retain), "ids": ids})
    if message.payload == b"plain":
        done.set()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="opts", protocol=mqtt.MQTTv5)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, port, keepalive=30)
client.loop_start()
if not subscribed.wait(30):
    sys.exit("no SUBACK")
print(json.dumps({"event": "ready"}), flush=True)
client.publish("opt/x", "own", qos=1).wait_for_publish(30)
print(json.dumps({"event": "published"}), flush=True)
ok = done.wait(60)
print(json.dumps({"event": "done" if ok else "timeout", "messages": messages}), flush=True)
client.disconnect()
client.loop_stop()
sys.exit(0 if ok else 1)

"""MQTT 5 request/response and message expiry (paho-mqtt 2.x), two clients in one process.

usage: request_response.py HOST PORT
The responder subscribes to req/# and exp/# (QoS 1) and answers every request on its
Response Topic with its Correlation Data; the requester subscribes to resp/requester.
Prints {"event": "ready"} once both have their SUBACKs. The requester then sends "ping" to
req/1 (QoS 1, Response Topic resp/requester, Correlation Data 00 ff 69 64, payload format
1, content type text/plain, user property trace=t1, Message Expiry Interval 300) and
prints {"event": "replied", "request": ..., "reply": ...}: each message's topic, payload,
retain flag and properties as its receiver saw them. Then the responder records what
arrives on exp/# until a message with payload "end", and prints
{"event": "done", "messages": [...]}. Exits 1 after 60 s.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port = sys.argv[1], int(sys.argv[2])
subscribed = threading.Semaphore(0)
replied = threading.Event()
ended = threading.Event()
seen = {"request": None, "reply": None}
expiring = []


def describe(message):
    p = message.properties
    out = {"topic": message.topic, "payload": message.payload.decode(), "retain": int(message.retain)}
    for name in ("ResponseTopic", "PayloadFormatIndicator", "ContentType", "MessageExpiryInterval"):
        if hasattr(p, name):
            out[name] = getattr(p, name)
    if hasattr(p, "CorrelationData"):
        out["CorrelationData"] = p.CorrelationData.hex()
    if hasattr(p, "UserProperty"):
        out["UserProperty"] = [list(kv) for kv in p.UserProperty]
    return out


def on_subscribe(client, userdata, mid, reason_codes, properties):
    subscribed.release()


def on_request(client, userdata, message):
    if message.topic.startswith("exp/"):
        expiring.append(describe(message))
        if message.payload == b"end":
            ended.set()
        return
    seen["request"] = describe(message)
    props = Properties(PacketTypes.PUBLISH)
    props.CorrelationData = message.properties.CorrelationData
    client.publish(message.properties.ResponseTopic, b"re:" + message.payload, qos=1,
                   properties=props)


def on_reply(client, userdata, message):
    seen["reply"] = describe(message)
    replied.set()


def client(client_id, on_message, filters):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.on_connect = lambda c, u, f, rc, p: c.subscribe([(f_, 1) for f_ in filters])
    c.connect(host, port, keepalive=30)
    c.loop_start()
    return c


responder = client("responder", on_request, ["req/#", "exp/#"])
requester = client("requester", on_reply, ["resp/requester"])
for _ in range(2):
    if not subscribed.acquire(timeout=30):
        sys.exit("no SUBACK")
print(json.dumps({"event": "ready"}), flush=True)

props = Properties(PacketTypes.PUBLISH)
props.ResponseTopic = "resp/requester"
props.CorrelationData = bytes.fromhex("00ff6964")
props.PayloadFormatIndicator = 1
props.ContentType = "text/plain"
props.UserProperty = ("trace", "t1")
props.MessageExpiryInterval = 300
requester.publish("req/1", b"ping", qos=1, properties=props).wait_for_publish(30)
if not replied.wait(30):
    sys.exit(f"no reply: {seen}")
print(json.dumps({"event": "replied", **seen}), flush=True)

ok = ended.wait(60)
print(json.dumps({"event": "done" if ok else "timeout", "messages": expiring}), flush=True)
for c in (responder, requester):
    c.disconnect()
    c.loop_stop()
sys.exit(0 if ok else 1)

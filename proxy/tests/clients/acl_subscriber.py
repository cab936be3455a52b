"""An MQTT subscriber (paho-mqtt 2.x) that reports each filter's SUBACK reason code and what
it then receives, for the ACL tests.

usage: acl_subscriber.py HOST PORT --version 3|5 --id ID [--user U --password P]
                         [--cafile CA [--cert C --key K]] --count N FILTER...
Sends one SUBSCRIBE (QoS 1) with every FILTER, prints {"event": "suback", "codes": [...]}
(reason codes as numbers), then {"event": "message", "topic": T, "payload": P} per message
and exits 0 after N of them; prints {"event": "disconnected", "reason": R} if the server
ends the connection. Exits 1 after 60 s.
"""
import argparse
import json
import sys
import threading

import paho.mqtt.client as mqtt

parser = argparse.ArgumentParser()
parser.add_argument("host")
parser.add_argument("port", type=int)
parser.add_argument("--version", choices=["3", "5"], required=True)
parser.add_argument("--id", required=True)
parser.add_argument("--user")
parser.add_argument("--password")
parser.add_argument("--cafile")
parser.add_argument("--cert")
parser.add_argument("--key")
parser.add_argument("--count", type=int, required=True)
parser.add_argument("filters", nargs="+")
args = parser.parse_args()

done = threading.Event()
received = 0


def emit(event):
    print(json.dumps(event), flush=True)


def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        emit({"event": "refused", "reason": reason_code.value})
        done.set()
        return
    client.subscribe([(f, 1) for f in args.filters])


def on_subscribe(client, userdata, mid, reason_codes, properties):
    emit({"event": "suback", "codes": [rc.value for rc in reason_codes]})
    if args.count == 0:
        done.set()


def on_message(client, userdata, message):
    global received
    emit({"event": "message", "topic": message.topic, "payload": message.payload.decode()})
    received += 1
    if received >= args.count:
        done.set()


def on_disconnect(client, userdata, flags, reason_code, properties):
    emit({"event": "disconnected", "reason": reason_code.value})
    done.set()


protocol = mqtt.MQTTv5 if args.version == "5" else mqtt.MQTTv311
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.id, protocol=protocol)
if args.user is not None:
    client.username_pw_set(args.user, args.password)
if args.cafile:
    client.tls_set(ca_certs=args.cafile, certfile=args.cert, keyfile=args.key)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.on_disconnect = on_disconnect
client.connect(args.host, args.port, keepalive=30)
client.loop_start()
ok = done.wait(60)
client.loop_stop()
sys.exit(0 if ok else 1)

"""An MQTT 5 client with a will that stays connected until it is killed (paho-mqtt 2.x).

usage: will_client.py HOST PORT CLIENT_ID WILL_TOPIC WILL_PAYLOAD
Connects (clean start 1, no automatic reconnect) with a QoS 1 will (content type
text/plain, correlation data "c-1", response topic status/req, user property why=gone,
message expiry 600 s), prints
{"event": "connected"} and waits. Killing it ends the connection abnormally, so the server
publishes the will; so does the death of the server process.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port, client_id, topic, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
connected = threading.Event()


def on_connect(client, userdata, flags, reason_code, properties):
    print(json.dumps({"event": "connected", "reason": reason_code.value}), flush=True)
    connected.set()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                     reconnect_on_failure=False)
client.on_connect = on_connect
props = Properties(PacketTypes.WILLMESSAGE)
props.ContentType = "text/plain"
props.CorrelationData = b"c-1"
props.ResponseTopic = "status/req"
props.UserProperty = ("why", "gone")
props.MessageExpiryInterval = 600
client.will_set(topic, payload, qos=1, properties=props)
client.connect(host, port, keepalive=60)
client.loop_forever()

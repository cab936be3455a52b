"""Publishes through an MQTT broker with paho-mqtt 2.x, waiting for every acknowledgement.

usage: paho_publish.py HOST PORT PREFIX [TRANSPORT]   (exits non-zero on any failure)
TRANSPORT is tcp (default), tls, ws or wss (WebSocket at path /mqtt); with TLS the CA file
is taken from the SLUICE_CA environment variable.
Sends, for MQTT 3.1.1 and 5: one message per QoS 0, 1, 2 to PREFIX/<version>/q<qos>, payload
"<version>-q<qos>", and on MQTT 5 a user property and a content type.
"""
import os
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
transport = sys.argv[4] if len(sys.argv) > 4 else "tcp"

for name, version in (("v311", mqtt.MQTTv311), ("v5", mqtt.MQTTv5)):
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"paho-{name}",
        protocol=version,
        transport="websockets" if transport.startswith("ws") else "tcp",
    )
    if transport.startswith("ws"):
        client.ws_set_options(path="/mqtt")
    if transport in ("tls", "wss"):
        client.tls_set(ca_certs=os.environ["SLUICE_CA"])
    if version == mqtt.MQTTv5:
        client.connect(host, port, keepalive=30, clean_start=True)
    else:
        client.connect(host, port, keepalive=30)
    client.loop_start()
    infos = []
    for qos in (0, 1, 2):
        props = None
        if version == mqtt.MQTTv5:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("client-lib", "paho")
            props.ContentType = "text/plain"
        infos.append(client.publish(f"{prefix}/{name}/q{qos}", f"{name}-q{qos}", qos=qos, properties=props))
    for info in infos:
        info.wait_for_publish(timeout=60)
        if not info.is_published():
            sys.exit(f"paho: message {info.mid} was not acknowledged")
    client.disconnect()
    client.loop_stop()

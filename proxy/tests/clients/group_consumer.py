"""A confluent-kafka consumer in a consumer group (range assignor), for interoperability
tests with sluice's shared subscriptions.

usage: group_consumer.py BOOTSTRAP GROUP TOPIC
Prints one JSON object per line: {"event": "assigned", "partitions": [..]} on every
assignment, {"event": "message", "value": str} per record. Runs until stdin closes.
"""
import json
import sys
import threading

from confluent_kafka import Consumer

bootstrap, group, topic = sys.argv[1], sys.argv[2], sys.argv[3]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()


def emit(**event):
    print(json.dumps(event), flush=True)


consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "partition.assignment.strategy": "range",
    "auto.offset.reset": "latest",
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
})
consumer.subscribe([topic], on_assign=lambda c, ps: emit(event="assigned", partitions=[p.partition for p in ps]))
while not stop.is_set():
    m = consumer.poll(0.2)
    if m is None or m.error():
        continue
    emit(event="message", value=m.value().decode())
consumer.close()

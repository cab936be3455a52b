#!/usr/bin/env python3
"""Produce records with an independent client and wait until each is acknowledged.

  produce.py --bootstrap H:P --topic T [--compression zstd] < records.jsonl

Reads one JSON object per line from stdin:
  {"partition": <int|null>, "key": <base64|null>, "value": <base64|null>,
   "headers": [["name", <base64|null>], ...], "timestamp": <ms|null>}
(every field optional; no partition means the client's partitioner picks one) and prints,
in the same order, one line per acknowledged record: {"partition": 0, "offset": 7}.
Acks are "all". Exits non-zero naming the first record that was not acknowledged.
"""

import json
import sys

from common import Deadline, confluent_config, fail, kafka_python_config, logs_from, parser, unb64


def read_records():
    records = []
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            records.append(
                {
                    "partition": r.get("partition"),
                    "key": unb64(r.get("key")),
                    "value": unb64(r.get("value")),
                    "headers": [(k, unb64(v)) for k, v in r.get("headers") or []],
                    "timestamp": r.get("timestamp"),
                }
            )
        except Exception as e:
            fail(f"stdin line {n} is not a record ({type(e).__name__}: {e}): {line.strip()[:200]}")
    return records


def confluent_produce(args, records, deadline):
    from confluent_kafka import Producer

    producer = logs_from(Producer(
        confluent_config(
            args,
            **{
                "acks": "all",
                "compression.type": args.compression,
                "message.timeout.ms": max(1000, int(args.timeout * 1000)),
                "linger.ms": 5,
            },
        )
    ))
    results = [None] * len(records)

    def delivered(index):
        def callback(err, msg):
            results[index] = err if err is not None else (msg.partition(), msg.offset())

        return callback

    for i, r in enumerate(records):
        kwargs = {"key": r["key"], "value": r["value"], "on_delivery": delivered(i)}
        if r["partition"] is not None:
            kwargs["partition"] = r["partition"]
        if r["headers"]:
            kwargs["headers"] = r["headers"]
        if r["timestamp"] is not None:
            kwargs["timestamp"] = r["timestamp"]
        while True:
            try:
                producer.produce(args.topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
    left = producer.flush(max(0.1, deadline.remaining()))
    if left:
        fail(f"{left} of {len(records)} records to {args.topic} not acknowledged within {args.timeout}s")
    return results


def kp_produce(args, records, deadline):
    from kafka import KafkaProducer

    for i, r in enumerate(records):
        for name, value in r["headers"]:
            if value is None:
                fail(f"record {i}: kafka-python cannot produce header {name!r} with a null value "
                     "(use confluent-kafka)")

    producer = KafkaProducer(
        **kafka_python_config(
            args,
            acks="all",
            compression_type=None if args.compression == "none" else args.compression,
            linger_ms=5,
            max_block_ms=max(1000, int(args.timeout * 1000)),
        )
    )
    futures = [
        producer.send(
            args.topic,
            key=r["key"],
            value=r["value"],
            partition=r["partition"],
            headers=r["headers"] or None,
            timestamp_ms=r["timestamp"],
        )
        for r in records
    ]
    producer.flush(timeout=max(0.1, deadline.remaining()))
    results = []
    for f in futures:
        try:
            md = f.get(timeout=max(0.1, deadline.remaining()))
            results.append((md.partition, md.offset))
        except Exception as e:
            results.append(e)
    producer.close(timeout=max(0.1, deadline.remaining()))
    return results


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--topic", required=True)
    p.add_argument("--compression", choices=["none", "gzip", "snappy", "lz4", "zstd"],
                   default="none")
    args = p.parse_args()
    records = read_records()
    deadline = Deadline(args.timeout)
    try:
        produce = confluent_produce if args.client == "confluent-kafka" else kp_produce
        results = produce(args, records, deadline)
    except SystemExit:
        raise
    except Exception as e:
        fail(f"producing to {args.topic} at {args.bootstrap} with {args.client} failed: "
             f"{type(e).__name__}: {e}")
    for i, result in enumerate(results):
        if not isinstance(result, tuple):
            fail(f"record {i} to {args.topic} was not acknowledged: {result}")
    for partition, offset in results:
        print(json.dumps({"partition": partition, "offset": offset}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Read every partition of a topic from the beginning with an independent client.

  consume.py --bootstrap H:P --topic T --expected N [--quiet-ms 1000] [--timeout 30]
  consume.py --bootstrap H:P --topic T --follow [--format text]   (until Ctrl-C)

Prints one JSON line per record:
  {"partition": 0, "offset": 7, "key": <base64|null>, "value": <base64|null>,
   "headers": [["name", <base64|null>], ...], "timestamp": <ms|null>,
   "timestamp_type": "create"|"log_append"|null}

It stops once it has seen at least N records, every partition has caught up with the high
watermark of its latest fetch, and no record arrived for --quiet-ms, so duplicates beyond N
are seen too. It never asks ListOffsets for the end (tansu's "latest" can be too low).
Exit status 3 when fewer than N records arrived before --timeout (those seen are printed).
"""

import json
import sys
import time
import uuid

from common import Deadline, b64, confluent_config, fail, kafka_python_config, parser, warn


FORMAT = "json"


def show(data):
    if data is None:
        return "null"
    try:
        return repr(data.decode("utf-8"))
    except UnicodeDecodeError:
        return data.hex()


def emit(partition, offset, key, value, headers, timestamp, timestamp_type):
    if FORMAT == "text":
        extra = "".join(f" {k}={show(v)}" for k, v in headers or [])
        print(f"partition {partition} offset {offset} key={show(key)} value={show(value)}{extra}",
              flush=True)
        return
    record = {
        "partition": partition,
        "offset": offset,
        "key": b64(key),
        "value": b64(value),
        "headers": [[k, b64(v)] for k, v in (headers or [])],
        "timestamp": timestamp,
        "timestamp_type": timestamp_type,
    }
    print(json.dumps(record), flush=True)


class Progress:
    """What the stop rule looks at: counts, the last arrival, and who has caught up."""

    def __init__(self, partitions):
        self.count = 0
        self.per_partition = {p: 0 for p in partitions}
        self.caught_up = {p: False for p in partitions}
        self.last_record = time.monotonic()

    def record(self, partition):
        self.count += 1
        self.per_partition[partition] = self.per_partition.get(partition, 0) + 1
        self.caught_up[partition] = False
        self.last_record = time.monotonic()

    def done(self, expected, quiet):
        return (
            self.count >= expected
            and all(self.caught_up.values())
            and time.monotonic() - self.last_record >= quiet
        )


def confluent_consume(args, deadline, on_idle):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        confluent_config(
            args,
            **{
                "group.id": f"sluice-tests-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # librdkafka reports _PARTITION_EOF when a fetch returns nothing past the
                # high watermark of that same fetch response (not ListOffsets).
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 100,
                "check.crcs": True,
            },
        )
    )
    try:
        md = consumer.list_topics(args.topic, timeout=max(0.1, deadline.remaining()))
        topic = md.topics.get(args.topic)
        if topic is None or topic.error is not None:
            fail(f"topic {args.topic} not in metadata from {args.bootstrap}: "
                 f"{topic.error if topic else 'absent'}")
        partitions = sorted(topic.partitions)
        progress = Progress(partitions)
        hopeless = {
            KafkaError._AUTHENTICATION,
            KafkaError._SSL,
            KafkaError._UNKNOWN_TOPIC,
            KafkaError._UNKNOWN_PARTITION,
            KafkaError.UNKNOWN_TOPIC_OR_PART,
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            KafkaError.SASL_AUTHENTICATION_FAILED,
        }
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
        while not on_idle(progress):
            msg = consumer.poll(min(0.1, max(0.01, deadline.remaining())))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    progress.caught_up[msg.partition()] = True
                    continue
                if err.fatal() or err.code() in hopeless:
                    fail(f"consuming {args.topic}: {err}")
                # Transport errors and the like: librdkafka reconnects by itself.
                warn(f"consuming {args.topic}: {err}")
                continue
            ts_type, ts = msg.timestamp()
            kind = {1: "create", 2: "log_append"}.get(ts_type)
            emit(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers(),
                 ts if kind else None, kind)
            progress.record(msg.partition())
        return progress
    finally:
        consumer.close()


def kp_consume(args, deadline, on_idle):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **kafka_python_config(
            args,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            check_crcs=True,
        )
    )
    try:
        partitions = None
        while partitions is None:
            partitions = consumer.partitions_for_topic(args.topic)
            if partitions is None:
                if deadline.passed():
                    fail(f"topic {args.topic} not in metadata from {args.bootstrap}")
                time.sleep(0.05)
        partitions = sorted(partitions)
        tps = [TopicPartition(args.topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        progress = Progress(partitions)
        while not on_idle(progress):
            batches = consumer.poll(timeout_ms=100)
            for tp, records in batches.items():
                for r in records:
                    kind = {0: "create", 1: "log_append"}.get(r.timestamp_type)
                    emit(tp.partition, r.offset, r.key, r.value, r.headers,
                         r.timestamp if kind else None, kind)
                    progress.record(tp.partition)
            for tp in tps:
                # highwater() is the watermark of the latest fetch response for tp.
                high = consumer.highwater(tp)
                if high is not None and consumer.position(tp) >= high:
                    progress.caught_up[tp.partition] = True
        return progress
    finally:
        consumer.close()


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--topic", required=True)
    p.add_argument("--expected", type=int, default=0)
    p.add_argument("--quiet-ms", type=int, default=1000,
                   help="stop only after no record arrived for this long (default 1000)")
    p.add_argument("--follow", action="store_true", help="keep printing records until killed")
    p.add_argument("--format", choices=["json", "text"], default="json",
                   help="text: one readable line per record, for people")
    args = p.parse_args()
    global FORMAT
    FORMAT = args.format

    deadline = Deadline(args.timeout)
    quiet = args.quiet_ms / 1000.0
    shortfall = []

    def on_idle(progress):
        if args.follow:
            return False
        if progress.done(args.expected, quiet):
            return True
        if deadline.passed():
            if progress.count < args.expected:
                shortfall.append(progress)
            else:
                behind = [p for p, ok in progress.caught_up.items() if not ok]
                warn(f"partitions {behind} never reported reaching their high watermark; "
                     f"stopping at the deadline with {progress.count} records")
            return True
        return False

    try:
        consume = confluent_consume if args.client == "confluent-kafka" else kp_consume
        consume(args, deadline, on_idle)
    except KeyboardInterrupt:
        return
    except SystemExit:
        raise
    except Exception as e:
        fail(f"consuming {args.topic} at {args.bootstrap} with {args.client} failed: "
             f"{type(e).__name__}: {e}")
    if shortfall:
        progress = shortfall[0]
        fail(
            f"saw {progress.count} of {args.expected} records of topic {args.topic} within "
            f"{args.timeout}s (per partition: {progress.per_partition})",
            code=3,
        )


if __name__ == "__main__":
    main()

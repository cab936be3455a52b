#!/usr/bin/env python3
"""Topic administration with an independent client.

  admin.py create-topic --bootstrap H:P --topic T [--partitions N] [--config key=value]...
  admin.py delete-topic --bootstrap H:P --topic T
  admin.py topics       --bootstrap H:P            (prints {"topic": partitions, ...} as JSON)

create-topic returns once the topic shows up in metadata with every partition, so a producer
started right after it finds the topic (tansu does not auto-create topics).
"""

import json
import sys
import time

from common import Deadline, confluent_config, fail, kafka_python_config, logs_from, parser


def confluent_admin(args):
    from confluent_kafka.admin import AdminClient

    return logs_from(AdminClient(confluent_config(args)))


def confluent_topics(args, admin, deadline):
    md = admin.list_topics(timeout=max(0.1, deadline.remaining()))
    return {
        name: len(t.partitions) for name, t in md.topics.items() if t.error is None
    }


def confluent_create(args, deadline):
    from confluent_kafka.admin import NewTopic

    admin = confluent_admin(args)
    topic = NewTopic(
        args.topic,
        num_partitions=args.partitions,
        replication_factor=args.replication_factor,
        config=dict(args.config),
    )
    futures = admin.create_topics([topic], request_timeout=max(1.0, deadline.remaining()))
    futures[args.topic].result(timeout=max(0.1, deadline.remaining()))
    return admin


def confluent_delete(args, deadline):
    admin = confluent_admin(args)
    futures = admin.delete_topics([args.topic], request_timeout=max(1.0, deadline.remaining()))
    futures[args.topic].result(timeout=max(0.1, deadline.remaining()))


def kp_admin(args):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(**kafka_python_config(args))


def kp_topics(args, admin, deadline):
    return {
        t["name"]: len(t["partitions"])
        for t in admin.describe_topics()
        if t.get("error_code", 0) == 0
    }


def kp_create(args, deadline):
    admin = kp_admin(args)
    admin.create_topics(
        {
            args.topic: {
                "num_partitions": args.partitions,
                "replication_factor": args.replication_factor,
                "configs": dict(args.config),
            }
        },
        timeout_ms=int(max(1.0, deadline.remaining()) * 1000),
    )
    return admin


def kp_delete(args, deadline):
    kp_admin(args).delete_topics(
        [args.topic], timeout_ms=int(max(1.0, deadline.remaining()) * 1000)
    )


def config_pair(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected key=value, got {text!r}")
    return key, value


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("action", choices=["create-topic", "delete-topic", "topics"])
    p.add_argument("--topic")
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--replication-factor", type=int, default=1)
    p.add_argument("--config", type=config_pair, action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    if args.action != "topics" and not args.topic:
        fail(f"{args.action} needs --topic")

    deadline = Deadline(args.timeout)
    confluent = args.client == "confluent-kafka"
    topics = confluent_topics if confluent else kp_topics
    try:
        if args.action == "create-topic":
            admin = (confluent_create if confluent else kp_create)(args, deadline)
            while topics(args, admin, deadline).get(args.topic) != args.partitions:
                if deadline.passed():
                    fail(
                        f"topic {args.topic} was created but metadata did not show its "
                        f"{args.partitions} partition(s) within {args.timeout}s"
                    )
                time.sleep(0.05)
        elif args.action == "delete-topic":
            (confluent_delete if confluent else kp_delete)(args, deadline)
        else:
            admin = confluent_admin(args) if confluent else kp_admin(args)
            json.dump(topics(args, admin, deadline), sys.stdout)
            print()
    except SystemExit:
        raise
    except Exception as e:  # the client's own exception types differ; name them all
        what = f"topic {args.topic}" if args.topic else "topics"
        fail(
            f"{args.action} ({what}) at {args.bootstrap} with {args.client} failed: "
            f"{type(e).__name__}: {e}"
        )


if __name__ == "__main__":
    main()

"""Shared command-line options and client configuration for the tools/kafka scripts.

Every script talks to the broker with an independent, real client: confluent-kafka
(librdkafka) by default, kafka-python with `--client kafka-python`. Bytes cross the
process boundary as base64 inside JSON lines, so keys, values and headers may be any bytes.
"""

import argparse
import base64
import logging
import os
import sys
import time

PROG = os.path.basename(sys.argv[0])


# confluent-kafka clients whose queued librdkafka log lines fail() should flush first.
_CLIENTS = []


def logs_from(client):
    """Registers a confluent-kafka AdminClient or Producer so that fail() prints its logs:
    librdkafka hands log lines over only inside poll()."""
    _CLIENTS.append(client)
    return client


def fail(message, code=1):
    """Print librdkafka's pending log lines, then a one-line error naming the script, and
    exit non-zero."""
    for client in _CLIENTS:
        try:
            client.poll(0)
        except Exception:
            pass
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def warn(message):
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def b64(data):
    return None if data is None else base64.b64encode(data).decode("ascii")


def unb64(text):
    return None if text is None else base64.b64decode(text)


def parser(description):
    p = argparse.ArgumentParser(prog=PROG, description=description)
    p.add_argument("--bootstrap", required=True, help="host:port of a broker")
    p.add_argument(
        "--client",
        choices=["confluent-kafka", "kafka-python"],
        default="confluent-kafka",
        help="which independent client does the job (default: confluent-kafka)",
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, help="give up after this many seconds (default 30)"
    )
    p.add_argument(
        "--security-protocol",
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        default="PLAINTEXT",
    )
    p.add_argument("--sasl-mechanism", help="e.g. SCRAM-SHA-256 or SCRAM-SHA-512")
    p.add_argument("--sasl-username")
    p.add_argument("--sasl-password")
    p.add_argument("--ssl-ca", help="PEM file of the CA that signed the broker's certificate")
    p.add_argument("--ssl-cert", help="PEM client certificate (mutual TLS)")
    p.add_argument("--ssl-key", help="PEM key of the client certificate")
    p.add_argument("--debug", help="librdkafka debug contexts, e.g. broker,security,protocol")
    return p


class _OncePerMessage(logging.Filter):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def filter(self, record):
        # librdkafka puts timings like "(after 0ms in state CONNECT)" in repeated lines.
        key = record.getMessage().split(" (after ")[0]
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def librdkafka_logger():
    logger = logging.getLogger("librdkafka")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: librdkafka: %(message)s"))
        logger.addHandler(handler)
        logger.addFilter(_OncePerMessage())
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger


def confluent_config(args, **extra):
    conf = {
        "bootstrap.servers": args.bootstrap,
        "security.protocol": args.security_protocol,
        "client.id": f"sluice-tests-{PROG}",
        # Errors reach the script through exceptions and error events; librdkafka's own log
        # lines go to stderr (which the Rust harness shows when a test fails), each distinct
        # line once: a refused connection is otherwise retried and logged every 50 ms.
        "logger": librdkafka_logger(),
    }
    if args.sasl_mechanism:
        conf["sasl.mechanism"] = args.sasl_mechanism
    if args.sasl_username is not None:
        conf["sasl.username"] = args.sasl_username
    if args.sasl_password is not None:
        conf["sasl.password"] = args.sasl_password
    if args.ssl_ca:
        conf["ssl.ca.location"] = args.ssl_ca
    if args.ssl_cert:
        conf["ssl.certificate.location"] = args.ssl_cert
    if args.ssl_key:
        conf["ssl.key.location"] = args.ssl_key
    if args.debug:
        conf["debug"] = args.debug
    conf.update(extra)
    return conf


def kafka_python_config(args, **extra):
    conf = {
        "bootstrap_servers": args.bootstrap,
        "security_protocol": args.security_protocol,
        "client_id": f"sluice-tests-{PROG}",
        "request_timeout_ms": max(1000, int(args.timeout * 1000)),
        "bootstrap_timeout_ms": max(1000, int(args.timeout * 1000)),
    }
    if args.sasl_mechanism:
        conf["sasl_mechanism"] = args.sasl_mechanism
    if args.sasl_username is not None:
        conf["sasl_plain_username"] = args.sasl_username
    if args.sasl_password is not None:
        conf["sasl_plain_password"] = args.sasl_password
    if args.ssl_ca:
        conf["ssl_cafile"] = args.ssl_ca
    if args.ssl_cert:
        conf["ssl_certfile"] = args.ssl_cert
    if args.ssl_key:
        conf["ssl_keyfile"] = args.ssl_key
    conf.update(extra)
    return conf


class Deadline:
    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self):
        return max(0.0, self.end - time.monotonic())

    def passed(self):
        return time.monotonic() >= self.end

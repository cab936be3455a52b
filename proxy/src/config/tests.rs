use super::*;

fn with(extra: &str) -> Result<Config, ConfigError> {
    let text = format!("{DEFAULT_TOML}\n{extra}");
    Config::parse(&text, None)
}

#[test]
fn the_embedded_default_is_valid_and_matches_the_issue() {
    let c = Config::default_config();
    assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:9092");
    assert_eq!(c.admin.listen.port(), 9100);
    assert_eq!(c.listeners[0].listen.port(), 1883);
    assert_eq!(c.routes[0].kafka_topic, "mqtt-messages");
    assert_eq!(c.routes[0].key_template(Protocol::Mqtt), "{topic}");
    let framed = c
        .listeners
        .iter()
        .find(|l| l.protocol == Protocol::Stream)
        .unwrap();
    assert_eq!(framed.listen.port(), 7000);
    assert_eq!(framed.codec.as_deref(), Some("framed"));
    let p = c.producer_config().unwrap();
    assert!(p.idempotent);
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let err = Config::parse(&DEFAULT_TOML.replace("linger.ms", "linger.msec"), None).unwrap_err();
    assert!(err.to_string().contains("linger.msec"), "{err}");
    let err = with("[extra]\nx = 1").unwrap_err();
    assert!(err.to_string().contains("extra"), "{err}");
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        ("acks = \"all\"", "acks = \"2\"", "kafka.acks"),
        (
            "\"compression.type\" = \"none\"",
            "\"compression.type\" = \"brotli\"",
            "kafka.compression.type",
        ),
        (
            "\"security.protocol\" = \"PLAINTEXT\"",
            "\"security.protocol\" = \"TLS\"",
            "kafka.security.protocol",
        ),
        ("acks = \"all\"", "acks = \"1\"", "kafka.enable.idempotence"),
        (
            "mqtt_topic = \"#\"",
            "mqtt_topic = \"a/#/b\"",
            "routes[0].mqtt_topic",
        ),
        (
            "kafka_topic = \"mqtt-messages\"",
            "kafka_topic = \"bad topic\"",
            "routes[0].kafka_topic",
        ),
        ("key = \"{topic}\"", "key = \"{nope}\"", "routes[0].key"),
        (
            "listener = \"mqtt\"",
            "listener = \"nope\"",
            "routes[0].listener",
        ),
        (
            "receive_maximum = 1024",
            "receive_maximum = 0",
            "listeners[0].receive_maximum",
        ),
        (
            "topic_partitions = 3",
            "topic_partitions = 0",
            "server.topic_partitions",
        ),
        (
            "io_uring_depth = 1024",
            "io_uring_depth = 1000",
            "server.io_uring_depth",
        ),
        (
            "io_uring_depth = 1024",
            "io_uring_depth = 65536",
            "server.io_uring_depth",
        ),
        (
            "share_heartbeat_ms = 1000",
            "share_heartbeat_ms = 4000",
            "mqtt.share_heartbeat_ms",
        ),
        (
            "share_heartbeat_ms = 1000",
            "share_heartbeat_ms = 0",
            "mqtt.share_heartbeat_ms",
        ),
        (
            "sessions_linger_ms = 20",
            "sessions_linger_ms = 1001",
            "mqtt.sessions_linger_ms",
        ),
    ];
    for (from, to, key) in cases {
        assert!(DEFAULT_TOML.contains(from), "default lacks {from}");
        let err = Config::parse(&DEFAULT_TOML.replace(from, to), None).unwrap_err();
        assert!(err.to_string().contains(key), "{to}: {err}");
    }
}

#[test]
fn the_session_producer_lingers_as_configured_with_one_request_in_flight() {
    let c = Config::default_config();
    let sessions = c.session_producer_config().unwrap();
    assert_eq!(sessions.linger, Duration::from_millis(20));
    assert_eq!(sessions.max_in_flight, 1);
    // The rest follows [kafka]: the main producer keeps its own linger and requests.
    let main = c.producer_config().unwrap();
    assert_eq!(main.linger, Duration::from_millis(5));
    assert_eq!(main.max_in_flight, 5);
    assert_eq!(sessions.idempotent, main.idempotent);
    let c = with("").unwrap();
    assert_eq!(c.mqtt.sessions_linger_ms, 20);
    let c = Config::parse(
        &DEFAULT_TOML.replace("sessions_linger_ms = 20", "sessions_linger_ms = 0"),
        None,
    )
    .unwrap();
    assert_eq!(c.session_producer_config().unwrap().linger, Duration::ZERO);
    // The delivery timeout must leave room for the session linger too.
    let text = DEFAULT_TOML
        .replace("sessions_linger_ms = 20", "sessions_linger_ms = 1000")
        .replace(
            "\"delivery.timeout.ms\" = 120000",
            "\"delivery.timeout.ms\" = 30500",
        );
    let err = Config::parse(&text, None).unwrap_err();
    assert!(err.to_string().contains("mqtt.sessions_linger_ms"), "{err}");
    assert!(err.to_string().contains("delivery.timeout.ms"), "{err}");
}

#[test]
fn sasl_and_tls_settings_map_to_the_client() {
    let text = DEFAULT_TOML.replace(
        "\"security.protocol\" = \"PLAINTEXT\"",
        "\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"u\"\n\"sasl.password\" = \"p\"\n\"ssl.ca.location\" = \"/ca.pem\"",
    );
    let c = Config::parse(&text, None).unwrap();
    let client = c.client_config().unwrap();
    assert_eq!(client.sasl.unwrap().mechanism, SaslMechanism::ScramSha512);
    assert_eq!(
        client.tls.unwrap().ca_file.unwrap(),
        PathBuf::from("/ca.pem")
    );
    let missing = DEFAULT_TOML.replace(
        "\"security.protocol\" = \"PLAINTEXT\"",
        "\"security.protocol\" = \"SASL_PLAINTEXT\"",
    );
    let err = Config::parse(&missing, None).unwrap_err();
    assert!(err.to_string().contains("kafka.sasl.username"), "{err}");
}

#[test]
fn the_configuration_doc_lists_every_key_of_the_default() {
    let doc = include_str!("../../../docs/configuration.md");
    let value: toml::Value = toml::from_str(DEFAULT_TOML).unwrap();
    let mut missing = Vec::new();
    for (section, table) in value.as_table().unwrap() {
        let tables: Vec<&toml::value::Table> = match table {
            toml::Value::Table(t) => vec![t],
            toml::Value::Array(a) => a.iter().filter_map(|v| v.as_table()).collect(),
            _ => vec![],
        };
        for t in tables {
            for key in t.keys() {
                let needle = format!("`{key}`");
                if !doc.contains(&needle) {
                    missing.push(format!("{section}.{key}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document {missing:?}"
    );
}

#[test]
fn stream_listeners_need_a_codec_and_one_route_without_a_filter() {
    let no_codec = DEFAULT_TOML.replace("codec = \"framed\"\n", "");
    let err = Config::parse(&no_codec, None).unwrap_err();
    assert!(err.to_string().contains("listeners[2].codec"), "{err}");
    let with_filter = DEFAULT_TOML.replace(
        "listener = \"framed\"\n",
        "listener = \"framed\"\nmqtt_topic = \"#\"\n",
    );
    let err = Config::parse(&with_filter, None).unwrap_err();
    assert!(err.to_string().contains("mqtt_topic"), "{err}");
    let mqtt_key = DEFAULT_TOML.replace("key = \"{key}\"", "key = \"{topic}\"");
    let err = Config::parse(&mqtt_key, None).unwrap_err();
    assert!(err.to_string().contains("routes[2].key"), "{err}");
}

#[test]
fn http_listener_options_are_checked_by_name() {
    let c = Config::default_config();
    let http = c.listeners.iter().find(|l| l.name == "http").unwrap();
    assert_eq!((http.protocol, http.listen.port()), (Protocol::Http, 8080));
    let cases = [
        (
            "max_body_bytes = 1048576",
            "max_body_bytes = 0",
            "max_body_bytes",
        ),
        (
            "max_body_bytes = 1048576",
            "max_body_bytes = 99999999999",
            "max_body_bytes",
        ),
        ("max_records = 10000", "max_records = 0", "max_records"),
        ("topics = [\"*\"]", "topics = []", "topics"),
        ("topics = [\"*\"]", "topics = [\"a/b\"]", "topics"),
        (
            "idle_timeout_ms = 60000",
            "idle_timeout_ms = 0",
            "idle_timeout_ms",
        ),
    ];
    for (from, to, key) in cases {
        assert!(DEFAULT_TOML.contains(from), "default lacks {from}");
        let err = Config::parse(&DEFAULT_TOML.replace(from, to), None).unwrap_err();
        assert!(err.to_string().contains(&format!("].{key}")), "{to}: {err}");
    }
    let err = with("[[routes]]\nlistener = \"http\"\nkafka_topic = \"t\"").unwrap_err();
    assert!(err.to_string().contains("http listener"), "{err}");
}

#[test]
fn reverse_routes_name_a_kafka_topic_and_an_mqtt_topic_template() {
    let c = with(
        "[[reverse_routes]]\nkafka_topic = \"orders\"\nmqtt_topic = \"shop/{header.region}/{key}\"",
    )
    .unwrap();
    assert_eq!(c.reverse_routes[0].kafka_topic, "orders");
    let c = with("[[reverse_routes]]\nkafka_topic = \"events\"").unwrap();
    assert_eq!(c.reverse_routes[0].mqtt_topic, "{key}");
    let cases = [
        (
            "kafka_topic = \"bad topic\"",
            "reverse_routes[0].kafka_topic",
        ),
        (
            "kafka_topic = \"mqtt-messages\"",
            "reverse_routes[0].kafka_topic",
        ),
        (
            "kafka_topic = \"mqtt-retained\"",
            "reverse_routes[0].kafka_topic",
        ),
        (
            "kafka_topic = \"o\"\nmqtt_topic = \"a/+/{key}\"",
            "reverse_routes[0].mqtt_topic",
        ),
        (
            "kafka_topic = \"o\"\nmqtt_topic = \"{value}\"",
            "reverse_routes[0].mqtt_topic",
        ),
    ];
    for (route, key) in cases {
        let err = with(&format!("[[reverse_routes]]\n{route}")).unwrap_err();
        assert!(err.to_string().contains(key), "{route}: {err}");
    }
    let twice = "[[reverse_routes]]\nkafka_topic = \"o\"\n[[reverse_routes]]\nkafka_topic = \"o\"";
    let err = with(twice).unwrap_err();
    assert!(
        err.to_string().contains("reverse_routes[1].kafka_topic"),
        "{err}"
    );
}

#[test]
fn routes_take_a_partitioner_or_a_partition() {
    let framed = "kafka_topic = \"tcp-records\"\n";
    let route = |extra: &str| DEFAULT_TOML.replace(framed, &format!("{framed}{extra}\n"));
    let c = Config::parse(&route("partitioner = \"round_robin\""), None).unwrap();
    assert_eq!(
        c.routes[2].partitioning(),
        Ok(Some(Partitioning::RoundRobin))
    );
    let c = Config::parse(&route("partition = 1"), None).unwrap();
    assert_eq!(
        c.routes[2].partitioning(),
        Ok(Some(Partitioning::Explicit(1)))
    );
    assert_eq!(c.routes[0].partitioning(), Ok(None), "by key");
    let err = Config::parse(&route("partitioner = \"hash\""), None).unwrap_err();
    assert!(err.to_string().contains("routes[2].partitioner"), "{err}");
    let both = route("partitioner = \"sticky\"\npartition = 1");
    let err = Config::parse(&both, None).unwrap_err();
    assert!(err.to_string().contains("routes[2].partition`"), "{err}");
}

#[test]
fn routes_with_acks_of_their_own_get_non_idempotent_producers_per_level() {
    let framed = "kafka_topic = \"tcp-records\"\n";
    let route = |extra: &str| DEFAULT_TOML.replace(framed, &format!("{framed}{extra}\n"));
    // No route sets acks: no producer besides the process's.
    let c = Config::default_config();
    assert!(c.route_acks_levels().is_empty());
    assert!(c.routes.iter().all(|r| c.route_acks(r).is_none()));
    // The process's level, however spelled, is the process's producer.
    for same in ["all", "-1"] {
        let c = Config::parse(&route(&format!("acks = \"{same}\"")), None).unwrap();
        assert!(c.route_acks_levels().is_empty(), "{same}");
        assert_eq!(c.route_acks(&c.routes[2]), None, "{same}");
    }
    let c = Config::parse(&route("acks = \"0\""), None).unwrap();
    assert_eq!(c.route_acks_levels(), [Acks::None]);
    assert_eq!(c.route_acks(&c.routes[2]), Some(Acks::None));
    assert_eq!(
        c.route_acks(&c.routes[0]),
        None,
        "the other routes keep all"
    );
    let own = c.route_producer_config(Acks::None).unwrap();
    let process = c.producer_config().unwrap();
    assert_eq!((own.acks, own.idempotent), (Acks::None, false));
    assert_eq!((process.acks, process.idempotent), (Acks::All, true));
    assert_eq!(own.linger, process.linger);
    assert_eq!(own.buffer_memory, process.buffer_memory);

    // Two levels, each once, in config order.
    let mqtt = "kafka_topic = \"mqtt-messages\"\n";
    let text = route("acks = \"0\"").replace(mqtt, &format!("{mqtt}acks = \"1\"\n"));
    let c = Config::parse(&text, None).unwrap();
    assert_eq!(c.route_acks_levels(), [Acks::Leader, Acks::None]);

    // A process with acks = 1: a route's "all" gets a producer of its own (not idempotent,
    // as the process's is not either), a route's "1" is the process's.
    let text = route("acks = \"all\"")
        .replace(mqtt, &format!("{mqtt}acks = \"1\"\n"))
        .replace("acks = \"all\"\n\"enable", "acks = \"1\"\n\"enable")
        .replace(
            "\"enable.idempotence\" = true",
            "\"enable.idempotence\" = false",
        );
    let c = Config::parse(&text, None).unwrap();
    assert_eq!(c.route_acks_levels(), [Acks::All]);
    assert_eq!(c.route_acks(&c.routes[0]), None);
    assert_eq!(c.route_acks(&c.routes[2]), Some(Acks::All));
    assert!(!c.route_producer_config(Acks::All).unwrap().idempotent);

    let err = Config::parse(&route("acks = \"2\""), None).unwrap_err();
    let err = err.to_string();
    assert!(
        err.contains("`routes[2].acks`") && err.contains("\"2\""),
        "{err}"
    );
    let err = Config::parse(&route("acks = 1"), None).unwrap_err();
    assert!(
        err.to_string().contains("acks"),
        "a number, not a string: {err}"
    );
}

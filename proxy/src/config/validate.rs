//! `Config::validate_with`: values and cross-references, each error naming the first bad
//! key.

use super::*;

impl Config {
    /// Checks values and cross-references, naming the first bad key; stream listeners may
    /// name the record codecs of `registry`.
    pub fn validate_with(&self, registry: &CodecRegistry) -> Result<(), ConfigError> {
        self.client_config()?;
        self.producer_config()?;
        self.session_producer_config()?;
        if !(2..=32_768).contains(&self.server.io_uring_depth)
            || !self.server.io_uring_depth.is_power_of_two()
        {
            return Err(invalid(
                "server.io_uring_depth",
                "must be a power of two from 2 to 32768",
            ));
        }
        if self.server.topic_partitions < 1 {
            return Err(invalid("server.topic_partitions", "must be at least 1"));
        }
        if self.mqtt.retained_topic.trim().is_empty() {
            return Err(invalid("mqtt.retained_topic", "is empty"));
        }
        if self.mqtt.sessions_topic.trim().is_empty() {
            return Err(invalid("mqtt.sessions_topic", "is empty"));
        }
        if !(1..=10_000).contains(&self.mqtt.delivery_max_wait_ms) {
            return Err(invalid(
                "mqtt.delivery_max_wait_ms",
                "must be from 1 to 10000",
            ));
        }
        if self.mqtt.sessions_linger_ms > MAX_SESSIONS_LINGER_MS {
            return Err(invalid(
                "mqtt.sessions_linger_ms",
                format!("must be at most {MAX_SESSIONS_LINGER_MS} (every persistent CONNECT waits for it)"),
            ));
        }
        if self.mqtt.share_heartbeat_ms == 0
            || self.mqtt.share_heartbeat_ms * 3 > self.mqtt.share_session_timeout_ms
        {
            return Err(invalid(
                "mqtt.share_heartbeat_ms",
                "must be above 0 and at most a third of mqtt.share_session_timeout_ms",
            ));
        }
        if self.mqtt.sessions_topic == self.mqtt.retained_topic {
            return Err(invalid(
                "mqtt.sessions_topic",
                "must differ from mqtt.retained_topic",
            ));
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka.bootstrap.servers", "is empty"));
        }
        let mut names = HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let key = |k: &str| format!("listeners[{i}].{k}");
            if l.name.is_empty() {
                return Err(invalid(key("name"), "is empty"));
            }
            if !names.insert(l.name.as_str()) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is used by two listeners", l.name),
                ));
            }
            if l.max_packet_size < 64 {
                return Err(invalid(key("max_packet_size"), "must be at least 64 bytes"));
            }
            if l.receive_maximum == 0 {
                return Err(invalid(key("receive_maximum"), "must be at least 1"));
            }
            if l.backlog <= 0 {
                return Err(invalid(key("backlog"), "must be positive"));
            }
            if l.protocol == Protocol::Http {
                self.validate_http(l, &key)?;
            }
            Self::validate_transport(l, &key)?;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let key = |k: &str| format!("listeners[{i}].{k}");
            match (l.protocol, &l.codec) {
                (Protocol::Stream, None) => {
                    let known: Vec<&str> = registry.names().collect();
                    return Err(invalid(
                        key("codec"),
                        format!("is required for a stream listener ({})", known.join(", ")),
                    ));
                }
                (Protocol::Stream, Some(codec)) => {
                    let settings = codec_settings(&l.codec_settings);
                    registry
                        .build(codec, &settings)
                        .map_err(|e| invalid(key("codec"), e.to_string()))?;
                    if self.routes.iter().filter(|r| r.listener == l.name).count() != 1 {
                        return Err(invalid(
                            key("name"),
                            "a stream listener needs exactly one route",
                        ));
                    }
                }
                (_, Some(_)) => {
                    return Err(invalid(key("codec"), "applies to stream listeners only"))
                }
                (_, None) if !l.codec_settings.is_empty() || l.acks => {
                    return Err(invalid(
                        key("acks"),
                        "and codec_settings apply to stream listeners only",
                    ));
                }
                _ => {}
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            let Some(listener) = self.listeners.iter().find(|l| l.name == r.listener) else {
                return Err(invalid(
                    key("listener"),
                    format!("names no listener ({:?})", r.listener),
                ));
            };
            match (listener.protocol, &r.mqtt_topic) {
                (Protocol::Mqtt, None) => {
                    return Err(invalid(
                        key("mqtt_topic"),
                        "is required for an MQTT listener",
                    ))
                }
                (Protocol::Mqtt, Some(filter)) => check_topic_filter(filter).map_err(|e| {
                    invalid(
                        key("mqtt_topic"),
                        format!("is not a valid MQTT topic filter: {e}"),
                    )
                })?,
                (_, Some(_)) => {
                    return Err(invalid(key("mqtt_topic"), "applies to MQTT listeners only"))
                }
                (_, None) => {}
            }
            check_kafka_topic(&r.kafka_topic).map_err(|e| invalid(key("kafka_topic"), e))?;
            let template = KeyTemplate::parse(r.key_template(listener.protocol))
                .map_err(|e| invalid(key("key"), e))?;
            match listener.protocol {
                Protocol::Stream if template.uses_mqtt() => {
                    return Err(invalid(
                        key("key"),
                        "uses MQTT fields; a stream listener has only {key}",
                    ))
                }
                Protocol::Mqtt if template.uses_record_key() => {
                    return Err(invalid(
                        key("key"),
                        "uses {key}, which only stream listeners have",
                    ))
                }
                _ => {}
            }
            for h in &r.headers {
                HeaderField::parse(h).map_err(|e| invalid(key("headers"), e))?;
            }
            r.partitioning().map_err(|e| {
                let which = if r.partition.is_some() && r.partitioner.is_some() {
                    "partition"
                } else {
                    "partitioner"
                };
                invalid(key(which), e)
            })?;
            r.acks().map_err(|e| invalid(key("acks"), e))?;
        }
        self.validate_reverse_routes()
    }

    fn validate_reverse_routes(&self) -> Result<(), ConfigError> {
        let keyed_by_topic = crate::delivery::keyed_by_topic(self);
        for (i, r) in self.reverse_routes.iter().enumerate() {
            let key = |k: &str| format!("reverse_routes[{i}].{k}");
            check_kafka_topic(&r.kafka_topic).map_err(|e| invalid(key("kafka_topic"), e))?;
            let topic = &r.kafka_topic;
            if keyed_by_topic.contains(topic) {
                return Err(invalid(
                    key("kafka_topic"),
                    format!("{topic:?} is written by an MQTT route with the key {{topic}}, so subscribers read it already, with the key as MQTT topic"),
                ));
            }
            if [&self.mqtt.retained_topic, &self.mqtt.sessions_topic].contains(&topic) {
                return Err(invalid(
                    key("kafka_topic"),
                    format!("{topic:?} is sluice's own retained or sessions topic"),
                ));
            }
            if self.reverse_routes[..i]
                .iter()
                .any(|o| &o.kafka_topic == topic)
            {
                return Err(invalid(
                    key("kafka_topic"),
                    format!("{topic:?} has an earlier reverse route"),
                ));
            }
            crate::delivery::TopicTemplate::parse(&r.mqtt_topic)
                .map_err(|e| invalid(key("mqtt_topic"), e))?;
        }
        Ok(())
    }

    fn validate_transport(
        l: &ListenerConfig,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        if let Some(tls) = &l.tls {
            if tls.handshake_timeout_ms == 0 {
                return Err(invalid(
                    key("tls.handshake_timeout_ms"),
                    "must be at least 1",
                ));
            }
            if tls.alpn.iter().any(|p| p.is_empty() || p.len() > 255) {
                return Err(invalid(
                    key("tls.alpn"),
                    "names must be 1 to 255 bytes long",
                ));
            }
        }
        let Some(ws) = &l.websocket else {
            return Ok(());
        };
        if ws.ping_interval_ms == Some(0) {
            return Err(invalid(
                key("websocket.ping_interval_ms"),
                "must be at least 1",
            ));
        }
        match (l.protocol, &ws.path) {
            (Protocol::Mqtt, Some(path)) if path.starts_with('/') && !path.contains('?') => Ok(()),
            (Protocol::Mqtt, _) => Err(invalid(
                key("websocket.path"),
                "must be set, starting with \"/\" (e.g. \"/mqtt\")",
            )),
            (Protocol::Http, None) => Ok(()),
            (Protocol::Http, Some(_)) => Err(invalid(
                key("websocket.path"),
                "does not apply to http listeners: raw WebSocket producers connect to /topics/{topic}",
            )),
            (Protocol::Stream, _) => Err(invalid(
                key("websocket"),
                "applies to mqtt and http listeners only",
            )),
        }
    }

    fn validate_http(
        &self,
        l: &ListenerConfig,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        if l.max_body_bytes == 0 || l.max_body_bytes > self.kafka.buffer_memory {
            return Err(invalid(
                key("max_body_bytes"),
                "must be between 1 and kafka.buffer.memory",
            ));
        }
        if l.max_records == 0 {
            return Err(invalid(key("max_records"), "must be at least 1"));
        }
        if l.idle_timeout_ms == 0 {
            return Err(invalid(key("idle_timeout_ms"), "must be at least 1"));
        }
        crate::http::TopicPatterns::parse(&l.topics).map_err(|e| invalid(key("topics"), e))?;
        if let Some(i) = self.routes.iter().position(|r| r.listener == l.name) {
            return Err(invalid(
                format!("routes[{i}].listener"),
                "names an http listener, which writes to the topic in the request path",
            ));
        }
        Ok(())
    }
}

/// Whether `name` is a valid Kafka topic name.
fn check_kafka_topic(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid Kafka topic name (1–249 of [a-zA-Z0-9._-])"
        ))
    }
}

//! Scenario `publish`: MQTT clients → sluice → Kafka (tansu), open loop at a fixed
//! aggregate rate (or closed loop with `--rate max`). Reports the achieved rate, PUBACK
//! latency percentiles measured from each PUBLISH's scheduled send time, sluice's CPU time
//! per message, and checks the count against sluice's own `sluice_records_produced_total`.
//!
//! With `--sink discard`, sluice writes to the discard sink instead of tansu: a measurement
//! tool that acknowledges Produce without storing, so the figure is sluice's own cost when
//! the broker is not the bottleneck. The sink's record count is checked against sluice's
//! metric too.
//!
//! With `--peer mosquitto|rumqttd` the clients publish to that broker instead (no Kafka
//! behind it: a PUBACK there means the broker has the message in memory); the CPU columns
//! are then the peer's and the Kafka count check does not apply.
//!
//! The load generator runs in child processes, so sluice's CPU (from /proc/PID/stat) is its
//! own; it shares the machine's cores with sluice and the broker, which the report states.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use serde::Serialize;

use crate::cpu::pid_cpu;
use crate::kafka_consumer::{Consumed, LatencyConsumer};
use crate::loadgen::{
    histogram_from, Group, LatencySummary, LoadgenArgs, Mode, MqttVersion, Rate, Stamp, Wire,
};
use crate::procs::{self, Peer, PeerKind, SluiceProc, SluiceSettings};
use crate::progress::Progress;
use crate::sink::{Sink, SinkKind};
use crate::stats::{latency_curve, throughput_timeline, CurvePoint, ThroughputPoint};

/// The `publish` scenario's arguments.
#[derive(Debug, Clone, Args, Serialize)]
pub struct PublishArgs {
    /// Client connections.
    #[arg(long, default_value_t = 100)]
    pub clients: u64,
    /// Aggregate PUBLISH rate (msgs/s), or `max` (closed loop, `--inflight` per client).
    #[arg(long, default_value = "20000")]
    pub rate: Rate,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// QoS (0 or 1).
    #[arg(long, default_value_t = 1)]
    pub qos: u8,
    /// Payload bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// MQTT version.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub mqtt: MqttVersion,
    /// What the clients speak: MQTT, sluice's length-prefixed records (`framed`), raw
    /// WebSocket messages (`ws`, on `/topics/mqtt-messages`) or HTTP produce calls
    /// (`http`, `POST /topics/mqtt-messages`, pipelined), each acknowledged (sluice only,
    /// QoS 1 only, no subscribers).
    #[arg(long, value_enum, default_value = "mqtt")]
    pub wire: Wire,
    /// Most PUBLISHes in flight per client.
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// Shards of the sluice process.
    #[arg(long, default_value_t = 2)]
    pub sluice_shards: usize,
    /// Executor threads per load-generator process.
    #[arg(long, default_value_t = 1)]
    pub loadgen_shards: usize,
    /// Most clients per load-generator process.
    #[arg(long, default_value_t = 18_000)]
    pub per_process: u64,
    /// Where sluice writes: tansu, or the discard sink (a measurement tool that acknowledges
    /// Produce without storing: sluice's own ceiling).
    #[arg(long, value_enum, default_value = "tansu")]
    pub sink: SinkKind,
    /// Publish to this peer broker instead of sluice (no Kafka behind it; `--sink` unused).
    #[arg(long, value_enum)]
    pub peer: Option<PeerKind>,
    /// Also read the topic with an independent Kafka consumer (librdkafka) and time each
    /// record from its scheduled send (tansu only).
    #[arg(long)]
    pub kafka_consumer: bool,
    /// The consumer's `fetch.wait.max.ms`: the most its own polling adds to the latency.
    #[arg(long, default_value_t = 5)]
    pub consumer_max_wait_ms: u32,
    /// MQTT subscribers to `bench/#` through sluice (one load-generator process): each
    /// checks every publisher's messages arrive complete, in order and once, and times them
    /// from their scheduled send (needs `--size` ≥ 20 and at most 4,096 clients).
    #[arg(long, default_value_t = 0)]
    pub subscribers: u64,
    /// sluice's `mqtt.delivery_max_wait_ms` (its default when not given).
    #[arg(long)]
    pub delivery_max_wait_ms: Option<u64>,
}

/// What the clients publish to.
pub enum Server {
    // Boxed: a sluice process's handle is several times a peer's.
    Sluice {
        broker: Sink,
        sluice: Box<SluiceProc>,
    },
    Peer(Peer),
}

impl Server {
    fn start(a: &PublishArgs) -> Result<Server> {
        if let Some(kind) = a.peer {
            return Ok(Server::Peer(Peer::start(kind)?));
        }
        // sluice creates its topic itself (CreateTopics), so the discard sink's default
        // partition count is never used here.
        let broker = Sink::start(a.sink, 3)?;
        let sluice = SluiceProc::start(&SluiceSettings {
            bootstrap: broker.bootstrap(),
            listen: "127.0.0.1:0".parse().expect("an address"),
            shards: a.sluice_shards,
            receive_maximum: 1024.max(a.inflight.min(65_535) as u16),
            linger_ms: None,
            sessions_linger_ms: None,
            delivery_max_wait_ms: a.delivery_max_wait_ms,
            headers: true,
            framed: a.wire == Wire::Framed,
            http: matches!(a.wire, Wire::Ws | Wire::Http),
        })?;
        Ok(Server::Sluice {
            broker,
            sluice: Box::new(sluice),
        })
    }

    /// Where the MQTT clients connect.
    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Server::Sluice { sluice, .. } => sluice.mqtt,
            Server::Peer(p) => p.addr,
        }
    }

    /// Where the publishers connect: the listener of `wire`.
    fn publish_addr(&self, wire: Wire) -> Result<std::net::SocketAddr> {
        match (self, wire) {
            (_, Wire::Mqtt) => Ok(self.addr()),
            (Server::Sluice { sluice, .. }, Wire::Framed) => {
                sluice.framed.context("sluice has no framed listener")
            }
            (Server::Sluice { sluice, .. }, Wire::Ws | Wire::Http) => {
                sluice.http.context("sluice has no HTTP listener")
            }
            (Server::Peer(_), _) => bail!("--wire {} needs sluice", wire.arg()),
        }
    }

    /// The MQTT server's CPU time so far.
    fn cpu(&self) -> Result<Duration> {
        let pid = match self {
            Server::Sluice { sluice, .. } => sluice.pid(),
            Server::Peer(p) => p.pid(),
        };
        pid_cpu(pid).context("reading the server's CPU time")
    }

    /// The Kafka sink's CPU time so far (zero for a peer).
    fn broker_cpu(&self) -> Duration {
        match self {
            Server::Sluice { broker, .. } => pid_cpu(broker.pid()).unwrap_or_default(),
            Server::Peer(_) => Duration::ZERO,
        }
    }

    /// A sluice metric summed over shards (zero for a peer).
    fn metric(&self, name: &str) -> Result<u64> {
        match self {
            Server::Sluice { sluice, .. } => sluice.metric(name),
            Server::Peer(_) => Ok(0),
        }
    }
}

/// The scenario's output.
#[derive(Debug, Serialize)]
pub struct PublishOutput {
    pub args: PublishArgs,
    pub connected: u64,
    pub sent: u64,
    pub acked: u64,
    pub unacked: u64,
    pub dropped: u64,
    /// Longest span from a client's first PUBLISH to its last PUBACK.
    pub publish_seconds: f64,
    pub sent_per_sec: f64,
    pub acked_per_sec: f64,
    pub puback_latency: LatencySummary,
    /// PUBACK latency percentiles, for plotting.
    pub puback_curve: Vec<CurvePoint>,
    /// sluice's CPU (with `--peer`, the peer's).
    pub sluice_cpu_seconds: f64,
    pub sluice_cpu_us_per_msg: f64,
    /// CPU of the sink (tansu or the discard sink, see `args.sink`).
    pub broker_cpu_seconds: f64,
    pub broker_cpu_us_per_msg: f64,
    pub loadgen_cpu_seconds: f64,
    /// Δ sluice_records_produced_total (all shards) over the publishing phase.
    pub records_produced: u64,
    /// Δ sluice_records_failed_total.
    pub records_failed: u64,
    /// records_produced equals the messages sluice was expected to write (acked for QoS 1,
    /// sent for QoS 0).
    pub kafka_count_matches: bool,
    /// Records the discard sink acknowledged (`--sink discard` only).
    pub sink_records: Option<u64>,
    /// PUBLISHes sent and acknowledged per second over the publishing phase.
    pub timeline: Vec<ThroughputPoint>,
    /// What the independent Kafka consumer read (`--kafka-consumer`).
    pub kafka_consumer: Option<ConsumerOutput>,
    /// What the MQTT subscribers received (`--subscribers`).
    pub mqtt_subscribers: Option<SubscribersOutput>,
}

/// The MQTT subscribers' view of a run: every publisher's messages, back through Kafka
/// and sluice.
#[derive(Debug, Serialize)]
pub struct SubscribersOutput {
    pub subscribers: u64,
    /// Deliveries due: every message sent, to every subscriber.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub malformed: u64,
    /// Subscribers that got every message exactly once, in order.
    pub complete: u64,
    /// Scheduled send by the publishing client → read by the subscribing one.
    pub latency: LatencySummary,
    pub curve: Vec<CurvePoint>,
}

/// The independent Kafka consumer's view of a run.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerOutput {
    /// Records of this run it read from Kafka.
    pub records: u64,
    /// Records without a readable stamp (none expected).
    pub malformed: u64,
    /// Seeks back to offsets the broker skipped (tansu's fetch-inside-a-batch quirk).
    pub refetches: u64,
    /// `records` equals the messages Kafka was expected to hold (acknowledged for QoS 1,
    /// sent for QoS 0).
    pub count_matches: bool,
    /// Scheduled send by the client → read by the consumer.
    pub latency: LatencySummary,
    pub curve: Vec<CurvePoint>,
}

impl ConsumerOutput {
    /// What `consumed` shows, given the records Kafka was expected to hold.
    pub fn of(consumed: &Consumed, expected: u64) -> ConsumerOutput {
        ConsumerOutput {
            records: consumed.records,
            malformed: consumed.malformed,
            refetches: consumed.refetches,
            count_matches: consumed.records == expected && consumed.malformed == 0,
            latency: LatencySummary::of(&consumed.latency),
            curve: latency_curve(&consumed.latency),
        }
    }
}

/// Runs the scenario.
pub fn run(a: &PublishArgs) -> Result<PublishOutput> {
    let server = Server::start(a)?;
    let mut output = measure(&server, a)?;
    if let Server::Sluice { broker, sluice } = server {
        drop(sluice);
        output.sink_records = broker.finish()?.map(|s| s.counts.records);
    }
    Ok(output)
}

/// One publishing run against a server that is already up (load generators started and
/// stopped here), so that a scenario can run several against one sluice and broker.
pub fn measure(server: &Server, a: &PublishArgs) -> Result<PublishOutput> {
    if a.clients == 0 || a.per_process == 0 || a.per_process > 19_000 {
        bail!("--clients must be positive and --per-process at most 19,000");
    }
    if a.qos > 1 {
        bail!("--qos must be 0 or 1");
    }
    if a.wire != Wire::Mqtt && (a.qos != 1 || a.peer.is_some() || a.subscribers > 0) {
        bail!("--wire framed, ws and http need sluice, --qos 1 and no --subscribers");
    }
    if a.subscribers > 0 && (a.size < Stamp::LEN || a.clients > 4096 || a.peer.is_some()) {
        bail!("--subscribers needs sluice, --size of at least 20 and at most 4,096 clients");
    }
    let mut subscribers = match a.subscribers {
        0 => None,
        n => {
            let mut group = Group::spawn(n, 1, |count, first| LoadgenArgs {
                connections: count,
                first_index: 1_000_000 + first,
                ..LoadgenArgs::subscriber(server.addr(), a.mqtt, a.qos, a.size, "bench/#")
            })?;
            group.wait_all_connected(n, 1000.0)?;
            Some(group)
        }
    };
    let processes = a.clients.div_ceil(a.per_process);
    let publish_addr = server.publish_addr(a.wire)?;
    let mut group = Group::spawn(a.clients, processes, |count, first| {
        let rate = match a.rate {
            Rate::PerSecond(r) => Rate::PerSecond(r * count as f64 / a.clients as f64),
            Rate::Max => Rate::Max,
        };
        LoadgenArgs {
            addr: publish_addr,
            connections: count,
            connect_rate: 5000.0 / processes as f64,
            mqtt: a.mqtt,
            wire: a.wire,
            path: format!("/topics/{}", procs::MQTT_KAFKA_TOPIC),
            keepalive: a.peer.map_or(0, PeerKind::min_keepalive),
            mode: Mode::Publish,
            rate,
            duration: a.duration,
            qos: a.qos,
            size: a.size,
            inflight: a.inflight,
            shards: a.loadgen_shards,
            first_index: first,
            connect_retries: 0,
            hold: 0.0,
            control: true,
            filter: String::new(),
        }
    })?;
    group.wait_all_connected(a.clients, 5000.0)?;
    let connected = a.clients;
    let consumer = match server {
        Server::Sluice { broker, .. } if a.kafka_consumer => {
            if a.sink != SinkKind::Tansu {
                bail!("--kafka-consumer needs --sink tansu");
            }
            let c = LatencyConsumer::start(
                &broker.bootstrap(),
                procs::MQTT_KAFKA_TOPIC,
                a.consumer_max_wait_ms,
                None,
            )?;
            c.wait_caught_up(Instant::now() + Duration::from_secs(60))?;
            Some(c)
        }
        _ => None,
    };
    // Let the connection burst's work finish before the CPU clock starts.
    procs::sleep(Duration::from_millis(500))?;
    let produced0 = server.metric("sluice_records_produced_total")?;
    let failed0 = server.metric("sluice_records_failed_total")?;
    let sluice_cpu0 = server.cpu()?;
    let broker_cpu0 = server.broker_cpu();
    eprintln!(
        "{connected} clients connected; publishing at {} msgs/s for {} s",
        a.rate, a.duration
    );
    for c in &mut group.children {
        c.go()?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(a.duration) + Duration::from_secs(60);
    let mut progress = Vec::new();
    let mut shown = Progress::seconds("publishing", a.duration);
    let whose = if group.children.len() > 1 {
        "by load generator 0"
    } else {
        "so far"
    };
    for c in &mut group.children {
        let mut events = Vec::new();
        c.wait_event_with("published", deadline, |e| {
            if e["event"] == "progress" {
                // The children publish together: the first one's clock is the phase's.
                if progress.is_empty() {
                    shown.at_seconds(e["seconds"].as_f64().unwrap_or(0.0).min(a.duration));
                    let acked = e["acked"].as_u64().unwrap_or(0);
                    shown.detail(format!("{acked} acknowledged {whose}"));
                }
                events.push(e);
            }
        })?;
        progress.push(events);
    }
    drop(shown);
    let sluice_cpu = server.cpu()? - sluice_cpu0;
    let broker_cpu = server.broker_cpu() - broker_cpu0;
    let total = group.finish(Instant::now() + Duration::from_secs(60))?;
    // QoS 1: every PUBACK follows the record's count in the metric. QoS 0: the records may
    // still be in flight to Kafka; wait for them (bounded).
    let expected = if a.qos == 0 {
        total.counts.sent
    } else {
        total.counts.acked
    };
    let mut produced = server.metric("sluice_records_produced_total")? - produced0;
    let until = Instant::now() + Duration::from_secs(15);
    while produced < expected && Instant::now() < until && a.peer.is_none() {
        procs::sleep(Duration::from_millis(100))?;
        produced = server.metric("sluice_records_produced_total")? - produced0;
    }
    let failed = server.metric("sluice_records_failed_total")? - failed0;
    let mqtt_subscribers = match subscribers.as_mut() {
        Some(group) => Some(subscribers_received(
            group,
            a.subscribers,
            &total.counts.sent_by_connection,
        )?),
        None => None,
    };
    let kafka_consumer = match consumer {
        Some(c) => {
            let consumed = c.finish(expected, Instant::now() + Duration::from_secs(15))?;
            Some(ConsumerOutput::of(&consumed, expected))
        }
        None => None,
    };
    let messages = expected.max(1) as f64;
    let span = total.counts.publish_seconds.max(1e-9);
    Ok(PublishOutput {
        args: a.clone(),
        connected,
        sent: total.counts.sent,
        acked: total.counts.acked,
        unacked: total.counts.unacked,
        dropped: total.counts.dropped,
        publish_seconds: total.counts.publish_seconds,
        sent_per_sec: total.counts.sent as f64 / span,
        acked_per_sec: total.counts.acked as f64 / span,
        puback_latency: total.puback_latency.clone(),
        puback_curve: latency_curve(&histogram_from(&total.puback_histogram)),
        sluice_cpu_seconds: sluice_cpu.as_secs_f64(),
        sluice_cpu_us_per_msg: sluice_cpu.as_secs_f64() * 1e6 / messages,
        broker_cpu_seconds: broker_cpu.as_secs_f64(),
        broker_cpu_us_per_msg: broker_cpu.as_secs_f64() * 1e6 / messages,
        loadgen_cpu_seconds: total.cpu_seconds,
        records_produced: produced,
        records_failed: failed,
        kafka_count_matches: a.peer.is_none() && produced == expected,
        sink_records: None,
        timeline: throughput_timeline(&progress),
        kafka_consumer,
        mqtt_subscribers,
    })
}

/// Tells the subscribers what each publisher sent, waits until they have it (or stop
/// waiting), and collects what they got.
fn subscribers_received(
    group: &mut Group,
    subscribers: u64,
    sent: &[(u64, u64)],
) -> Result<SubscribersOutput> {
    // Streams are the publishers' connection numbers, from 0.
    let streams = sent.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
    let mut per_stream = vec![0; streams as usize];
    for (i, n) in sent {
        per_stream[*i as usize] = *n;
    }
    for c in &mut group.children {
        c.expect(&per_stream)?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for c in &mut group.children {
        c.wait_event("received", deadline)?;
    }
    let total = group.finish(Instant::now() + Duration::from_secs(30))?;
    let n = &total.counts;
    Ok(SubscribersOutput {
        subscribers,
        expected: per_stream.iter().sum::<u64>() * subscribers,
        received: n.received,
        lost: n.lost,
        duplicates: n.duplicates,
        malformed: n.malformed,
        complete: n.complete,
        latency: total.delivery_latency.clone(),
        curve: latency_curve(&histogram_from(&total.delivery_histogram)),
    })
}

/// Prints the results as Markdown tables.
pub fn print(o: &PublishOutput) {
    let l = &o.puback_latency;
    println!(
        "| clients | QoS | target msgs/s | sent/s | acked/s | p50 ms | p90 ms | p99 ms | p99.9 ms | p99.99 ms | max ms |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {} | {} | {:.0} | {:.0} | {} |",
        o.connected,
        o.args.qos,
        o.args.rate,
        o.sent_per_sec,
        o.acked_per_sec,
        l.ms_cells(),
    );
    println!();
    let broker = match (o.args.peer, o.args.sink) {
        (Some(_), _) => "(no Kafka)",
        (None, SinkKind::Tansu) => "tansu",
        (None, SinkKind::Discard) => "discard sink",
    };
    let server = o.args.peer.map_or("sluice", PeerKind::name);
    println!("| sent | acked | unacked | dropped | {server} CPU µs/msg | {broker} CPU µs/msg | loadgen CPU s | records produced (sluice metric) | matches |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    println!(
        "| {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {} | {} |",
        o.sent,
        o.acked,
        o.unacked,
        o.dropped,
        o.sluice_cpu_us_per_msg,
        o.broker_cpu_us_per_msg,
        o.loadgen_cpu_seconds,
        o.records_produced,
        match (o.args.peer, o.kafka_count_matches) {
            (Some(_), _) => "n/a",
            (None, true) => "yes",
            (None, false) => "NO",
        },
    );
    if let Some(c) = &o.kafka_consumer {
        println!("\nIndependent Kafka consumer (librdkafka), scheduled send → read:\n");
        println!("| p50 ms | p90 ms | p99 ms | p99.9 ms | p99.99 ms | max ms | records read | matches | seeks back over skipped offsets |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
        println!(
            "| {} | {} | {} | {} |",
            c.latency.ms_cells(),
            c.records,
            if c.count_matches { "yes" } else { "NO" },
            c.refetches
        );
    }
    if let Some(m) = &o.mqtt_subscribers {
        println!("\nMQTT subscribers to bench/# through sluice, scheduled send → received:\n");
        println!("| subscribers | p50 ms | p90 ms | p99 ms | p99.9 ms | p99.99 ms | max ms | received / expected | lost | dup | malformed | complete |");
        println!(
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        println!(
            "| {} | {} | {} / {} | {} | {} | {} | {} |",
            m.subscribers,
            m.latency.ms_cells(),
            m.received,
            m.expected,
            m.lost,
            m.duplicates,
            m.malformed,
            m.complete
        );
    }
    if let Some(records) = o.sink_records {
        println!(
            "\nsluice wrote to the discard sink (a measurement tool: records acknowledged, not \
             stored); it counted {records} records ({})",
            if records == o.records_produced {
                "= sluice's metric"
            } else {
                "NOT sluice's metric"
            }
        );
    }
}

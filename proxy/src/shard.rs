//! One shard: an executor thread that owns its listening sockets, its client connections,
//! its Kafka client and producer, and its counters. Shards share nothing mutable; the only
//! things crossing threads are the read-only config, the metrics atomics and the shutdown
//! flag.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::future::{AbortHandle, Abortable};
use kafka_wire::{Acks, Client, NewTopic, Producer};
use tracing::{error, info, warn};

use crate::auth::ShardAuth;
use crate::config::{Config, Protocol};
use crate::delivery::{Delivery, DeliveryFeed, DeliveryTopics};
use crate::driver::ShutdownSignal;
use crate::http;
use crate::metrics::{Metrics, ShardMetrics};
use crate::mqtt::{self, MqttListener};
use crate::park::ParkingLot;
use crate::route::{Route, Routes};
use crate::runtime::{self, ListenOptions, TcpListener};
use crate::sessions::{SessionFeed, SessionStore};
use crate::share::{ShareSettings, Shares};
use crate::stream::{self, StreamListener};

/// Bytes read from a socket at a time, into the shard's scratch buffer.
const SCRATCH_BYTES: usize = 64 * 1024;

/// What every connection of a shard shares.
#[derive(Debug)]
pub struct Shard {
    /// This shard's number.
    pub index: usize,
    /// The shard's Kafka client for reading (metadata, fetches), on connections of its own:
    /// the producer's connections carry only Produce requests.
    pub client: Client,
    /// The shard's Kafka producer, with the process's `kafka.acks`: every record but those
    /// of routes with acks of their own.
    pub producer: Producer,
    /// The producers of routes whose `acks` differ from the process's, one per acks level
    /// (none unless a route sets one).
    pub route_producers: Vec<(Acks, Producer)>,
    /// The shard's counters.
    pub metrics: Arc<ShardMetrics>,
    /// Where sockets are read into when they have data.
    pub scratch: RefCell<Vec<u8>>,
    /// The block decoded packets are sliced from (zero-copy payloads).
    pub arena: RefCell<BytesMut>,
    /// Set when the process is shutting down.
    pub shutdown: ShutdownSignal,
    /// Subscriptions and the Kafka readers that feed them.
    pub delivery: Rc<Delivery>,
    /// MQTT sessions kept in Kafka.
    pub sessions: Rc<SessionStore>,
    /// The MQTT session effects buffer, lent to the connection handling a packet: an idle
    /// connection holds none (`mqtt::Conn::lend_effects`).
    pub spare_effects: RefCell<Vec<codecs::mqtt::session::Effect>>,
    /// Idle connections without a task; `None` if the shard could not make its epoll set.
    pub lot: Option<Rc<ParkingLot>>,
    /// Shared subscriptions, as Kafka consumer groups.
    pub shares: Rc<Shares>,
    /// [`coarse_ms`] when the shard started.
    started_ms: u64,
    next_conn: Cell<u64>,
    /// When the shard last read from a socket (monotonic, and milliseconds since the Unix
    /// epoch): what the packets decoded from that read count as their arrival time, so a
    /// read of many packets costs two clock reads, not a few per packet.
    read_at: Cell<(Instant, i64)>,
}

impl Shard {
    /// Notes that data was just read from a socket.
    pub fn mark_read(&self) {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.read_at.set((Instant::now(), unix_ms));
    }

    /// When the latest read happened ([`Shard::mark_read`]).
    pub fn read_at(&self) -> Instant {
        self.read_at.get().0
    }

    /// The latest read's time in milliseconds since the Unix epoch (a record's timestamp).
    pub fn read_at_unix_ms(&self) -> i64 {
        self.read_at.get().1
    }

    /// Milliseconds since the shard started (the sessions' clock: keepalives, takeovers,
    /// session saves).
    ///
    /// Read for every packet, so it comes from the kernel's coarse monotonic clock: ~5 ns
    /// a read instead of ~25 for the precise one (`Instant::now`), and a tick of one jiffy
    /// (4 ms here), which keepalives of seconds do not notice. It lags the precise clock
    /// that timers run on by up to a tick, so a wait of exactly `at - now_ms()` can end
    /// while this still reads less than `at`: waits computed from it add
    /// [`coarse_tick`] (`mqtt::Conn::deadline`), and fire up to a tick late, never early.
    pub fn now_ms(&self) -> u64 {
        coarse_ms().saturating_sub(self.started_ms)
    }

    /// The producer that takes `route`'s records: the one of its acks level.
    pub fn producer_for(&self, route: &Route) -> &Producer {
        match route.acks {
            None => &self.producer,
            Some(acks) => self
                .route_producers
                .iter()
                .find(|(level, _)| *level == acks)
                .map(|(_, p)| p)
                .expect("a producer for every acks level the routes name"),
        }
    }

    /// A number for a new connection.
    pub fn next_conn_id(&self) -> u64 {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        id
    }

    /// A client identifier for a client that sent none, unique in this process.
    pub fn assign_client_id(&self) -> String {
        format!(
            "sluice-{}-{}-{}",
            std::process::id(),
            self.index,
            self.next_conn_id()
        )
    }
}

/// Everything a shard needs from the process.
#[derive(Debug, Clone)]
pub struct ShardSetup {
    /// The configuration (validated).
    pub config: Arc<Config>,
    /// Every shard's counters.
    pub metrics: Arc<Metrics>,
    /// The listeners' resolved addresses (port 0 replaced), by config index.
    pub addresses: Arc<Vec<std::net::SocketAddr>>,
    /// The admin listener's address (on shard 0).
    pub admin: Option<Arc<std::sync::Mutex<Option<std::net::TcpListener>>>>,
    /// Shutdown: set by SIGTERM / SIGINT, or by a shard that cannot start.
    pub stop: Arc<crate::stop::Stop>,
    /// Shards whose listeners are open.
    pub listening: Arc<std::sync::atomic::AtomicUsize>,
    /// Shards that finished their shutdown (everything accepted was answered or failed).
    pub stopped: Arc<std::sync::atomic::AtomicUsize>,
    /// The record codecs stream listeners name: built in and plugged in.
    pub codecs: Arc<codecs::registry::CodecRegistry>,
    /// The process's reader of the session topic, one receiver per shard.
    pub session_feed: Arc<SessionFeed>,
    /// The process's readers of the delivery and retained topics, one receiver per shard.
    pub delivery_feed: Arc<DeliveryFeed>,
}

/// Runs shard `index` until shutdown.
pub async fn run(index: usize, setup: ShardSetup) {
    let metrics = setup.metrics.shard(index);
    let config = &setup.config;
    let client = connect_kafka(config, setup.stop.flag()).await;
    let Some(client) = client else { return };
    let producer_config = config.producer_config().expect("validated");
    let Some(producer) = start_producer(&client, producer_config, index, setup.stop.flag()).await
    else {
        return;
    };
    // Session records get a producer of their own: their linger and single request in
    // flight gather a shard's claims and saves into few batches and few concurrent
    // requests, without slowing publishes.
    let session_config = config.session_producer_config().expect("validated");
    let Some(session_producer) =
        start_producer(&client, session_config, index, setup.stop.flag()).await
    else {
        return;
    };
    // Reads get broker connections of their own: a broker answers a connection's requests
    // in order, so a fetch waiting for data would hold up the Produce requests queued
    // behind it, and with them every PUBACK.
    let Some(reader) = connect_retrying(config, index, "Kafka reader", setup.stop.flag()).await
    else {
        return;
    };
    // Routes whose acks differ from the process's get a producer per acks level, each on
    // broker connections of its own: a broker works through a connection's requests in
    // order, so an acks=0 or acks=1 Produce would otherwise wait behind acks=all ones for
    // the replicas. None (and no connections) when no route overrides acks.
    let mut route_producers = Vec::new();
    for acks in config.route_acks_levels() {
        let what = "Kafka connections of a route producer";
        let Some(own) = connect_retrying(config, index, what, setup.stop.flag()).await else {
            return;
        };
        let settings = config.route_producer_config(acks).expect("validated");
        let Some(p) = start_producer(&own, settings, index, setup.stop.flag()).await else {
            return;
        };
        route_producers.push((acks, p));
    }
    metrics.kafka_ready.store(true, Ordering::Relaxed);
    let delivery_topics = Rc::new(DeliveryTopics::new(config));
    let shard = Rc::new(Shard {
        index,
        producer: producer.clone(),
        route_producers,
        client: reader.clone(),
        metrics: metrics.clone(),
        scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
        arena: RefCell::new(BytesMut::new()),
        spare_effects: RefCell::new(Vec::new()),
        lot: match ParkingLot::new(metrics.parked.clone()) {
            Ok(lot) => {
                let lot = Rc::new(lot);
                runtime::spawn(lot.clone().run());
                Some(lot)
            }
            Err(e) => {
                warn!(error = %e, "cannot create an epoll set: idle connections will not park");
                None
            }
        },
        shutdown: ShutdownSignal::default(),
        delivery: Rc::new(Delivery::new(
            reader.clone(),
            setup.delivery_feed.clone(),
            delivery_topics.clone(),
            config.mqtt.retained_topic.clone(),
            metrics.clone(),
        )),
        sessions: Rc::new(SessionStore::new(
            session_producer.clone(),
            config.mqtt.sessions_topic.clone(),
            index,
        )),
        shares: Rc::new(Shares::new(
            config.client_config().expect("validated"),
            delivery_topics.clone(),
            ShareSettings {
                group_prefix: config.mqtt.share_group_prefix.clone(),
                session_timeout: Duration::from_millis(config.mqtt.share_session_timeout_ms),
                heartbeat_interval: Duration::from_millis(config.mqtt.share_heartbeat_ms),
            },
            metrics.clone(),
        )),
        started_ms: coarse_ms(),
        next_conn: Cell::new(0),
        read_at: Cell::new((Instant::now(), 0)),
    });

    let serves_mqtt = config
        .listeners
        .iter()
        .any(|l| l.protocol == Protocol::Mqtt);
    if let Some(updates) = setup.session_feed.receiver(index).filter(|_| serves_mqtt) {
        // Isolated, as the reader is: this applies every record it reads.
        runtime::spawn(crate::alloc::Isolated::new(
            shard.sessions.clone().follow(updates),
        ));
    }
    if let Some(updates) = setup.delivery_feed.receiver(index).filter(|_| serves_mqtt) {
        runtime::spawn(shard.delivery.clone().follow(updates));
    }
    if index == 0 && serves_mqtt {
        // One reader of the delivery and retained topics per process, started by the
        // first SUBSCRIBE of any shard (`delivery::feed`).
        runtime::spawn(setup.delivery_feed.clone().run(
            config.client_config().expect("validated"),
            delivery_topics.names(),
            config.mqtt.retained_topic.clone(),
            Duration::from_millis(config.mqtt.delivery_max_wait_ms),
            metrics.clone(),
        ));
    }
    if index == 0 && serves_mqtt {
        // One reader of the session topic per process, on a connection of its own: a
        // claim's read-back must not queue behind delivery fetches waiting for data.
        let (feed, stop, shared) = (
            setup.session_feed.clone(),
            setup.stop.clone(),
            setup.config.clone(),
        );
        runtime::spawn(async move {
            let what = "session topic's reader";
            let Some(client) = connect_retrying(&shared, index, what, stop.flag()).await else {
                return;
            };
            // Isolated: the records of one fetch, tens to hundreds of KB while a connect
            // burst claims its sessions, are freed once every shard has applied them.
            crate::alloc::Isolated::new(feed.run(client, shared.mqtt.sessions_topic.clone())).await;
        });
        // One watcher per process: heartbeats, and the wills of processes that died.
        let watcher = shard.clone();
        runtime::spawn(
            shard
                .sessions
                .clone()
                .watch_processes(move |client_id, will| {
                    mqtt::publish_stored_will(watcher.clone(), client_id, will)
                }),
        );
    }
    let mut accept_loops = Vec::new();
    let registry = setup.codecs.clone();
    for (i, l) in config.listeners.iter().enumerate() {
        let addr = setup.addresses[i];
        let socket = match runtime::listen(addr, ListenOptions { backlog: l.backlog }) {
            Ok(s) => s,
            Err(e) => {
                error!(shard = index, listener = %l.name, %addr, error = %e, "cannot listen");
                setup.stop.trigger();
                return;
            }
        };
        match l.protocol {
            Protocol::Mqtt => {
                let listener = Rc::new(MqttListener {
                    index: i,
                    config: l.clone(),
                    routes: Routes::for_listener(&l.name, l.protocol, config),
                    auth: l.authenticator.clone().map(ShardAuth::new),
                    session: MqttListener::session_config(l),
                });
                let shard = shard.clone();
                accept_loops.push(spawn_accept_loop(socket, l.name.clone(), move |conn| {
                    runtime::spawn(mqtt::serve(conn, shard.clone(), listener.clone()))
                }));
            }
            Protocol::Stream => {
                let listener = Rc::new(StreamListener {
                    index: i,
                    config: l.clone(),
                    routes: Routes::for_listener(&l.name, l.protocol, config),
                    registry: registry.clone(),
                    auth: l.authenticator.clone().map(ShardAuth::new),
                });
                let shard = shard.clone();
                accept_loops.push(spawn_accept_loop(socket, l.name.clone(), move |conn| {
                    runtime::spawn(stream::serve(conn, shard.clone(), listener.clone()))
                }));
            }
            Protocol::Http => {
                let listener = Rc::new(http::HttpListener::new(i, l.clone()));
                let shard = shard.clone();
                accept_loops.push(spawn_accept_loop(socket, l.name.clone(), move |conn| {
                    runtime::spawn(http::serve(conn, shard.clone(), listener.clone()))
                }));
            }
        }
    }
    if let Some(admin) = setup
        .admin
        .as_ref()
        .and_then(|a| a.lock().expect("lock").take())
    {
        match admin_listener(admin) {
            Ok(l) => runtime::spawn(crate::admin::serve(l, setup.metrics.clone())),
            Err(e) => error!(error = %e, "cannot serve the admin listener"),
        }
    }
    runtime::spawn(copy_producer_stats(shard.clone()));
    runtime::spawn(collect_freed_memory(shard.clone()));
    setup.listening.fetch_add(1, Ordering::SeqCst);
    info!(shard = index, "shard ready");

    setup.stop.wait(index).await;

    // Shutdown: stop accepting, let connections drain their acknowledgements and say
    // goodbye, then flush the producer within the deadline.
    info!(shard = index, "shutting down: draining connections");
    metrics.draining.store(true, Ordering::Relaxed);
    accept_loops.iter().for_each(AbortHandle::abort);
    shard.shutdown.set();
    if let Some(lot) = &shard.lot {
        lot.resume_all();
    }
    let deadline = Instant::now() + Duration::from_millis(config.server.shutdown_timeout_ms);
    let open = || -> u64 {
        metrics
            .listeners
            .iter()
            .map(|l| l.connections_open.load(Ordering::Relaxed))
            .sum()
    };
    while open() > 0 && Instant::now() < deadline {
        runtime::sleep(Duration::from_millis(10)).await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    info!(
        shard = index,
        connections_left = open(),
        "flushing the producer"
    );
    let left = left.max(Duration::from_millis(100));
    let routes = shard.route_producers.iter().map(|(_, p)| p.close(left));
    futures::future::join3(
        producer.close(left),
        session_producer.close(left),
        futures::future::join_all(routes),
    )
    .await;
    info!(shard = index, connections_left = open(), "shard stopped");
    setup.stopped.fetch_add(1, Ordering::SeqCst);
    if index == 0 {
        // Shard 0 serves the admin listener: keep it up (and /metrics showing the drain)
        // until every other shard has stopped.
        let others = setup.metrics.shard_count();
        let until = deadline + Duration::from_secs(1);
        while setup.stopped.load(Ordering::SeqCst) < others && Instant::now() < until {
            runtime::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Starts a producer on `client`, retrying until it has its producer id or shutdown
/// begins (`None`).
async fn start_producer(
    client: &Client,
    config: kafka_wire::ProducerConfig,
    shard: usize,
    stop: &AtomicBool,
) -> Option<Producer> {
    loop {
        match Producer::new(client.clone(), config.clone()).await {
            Ok(p) => return Some(p),
            Err(e) if !stop.load(Ordering::Relaxed) => {
                warn!(shard, error = %e, "cannot start the Kafka producer; retrying");
                runtime::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return None,
        }
    }
}

/// A Kafka client on connections of its own, retrying until the cluster answers or
/// shutdown begins (`None`).
async fn connect_retrying(
    config: &Config,
    shard: usize,
    what: &str,
    stop: &AtomicBool,
) -> Option<Client> {
    loop {
        match Client::connect(config.client_config().expect("validated")).await {
            Ok(c) => return Some(c),
            Err(e) if !stop.load(Ordering::Relaxed) => {
                warn!(shard, error = %e, "cannot connect the {what}; retrying");
                runtime::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return None,
        }
    }
}

/// Connects to Kafka, retrying until it answers or shutdown begins, and creates the topics
/// the routes write to.
async fn connect_kafka(config: &Config, stop: &AtomicBool) -> Option<Client> {
    let client_config = config.client_config().expect("validated");
    loop {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        match Client::connect(client_config.clone()).await {
            Ok(client) => {
                let mut topics: Vec<NewTopic> = route_topics(config)
                    .into_iter()
                    .map(|t| NewTopic::new(t, config.server.topic_partitions))
                    .collect();
                for state in [&config.mqtt.retained_topic, &config.mqtt.sessions_topic] {
                    topics.push(
                        NewTopic::new(state, config.server.topic_partitions)
                            .config("cleanup.policy", "compact"),
                    );
                }
                match client.create_topics(&topics).await {
                    Ok(()) => return Some(client),
                    Err(e) => warn!(error = %e, "cannot create the routes' topics; retrying"),
                }
            }
            Err(e) => warn!(error = %e, "Kafka is not reachable yet; retrying"),
        }
        runtime::sleep(Duration::from_secs(1)).await;
    }
}

/// Milliseconds on the kernel's coarse monotonic clock (see [`Shard::now_ms`]).
fn coarse_ms() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    // Cannot fail: the clock exists on every Linux since 2.6.32 and the pointer is valid.
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE).expect("CLOCK_MONOTONIC_COARSE");
    t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000
}

/// The coarse clock's tick: how far it can lag the precise one (4 ms at HZ=250).
pub fn coarse_tick() -> Duration {
    use nix::time::{clock_getres, ClockId};
    static TICK: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        clock_getres(ClockId::CLOCK_MONOTONIC_COARSE).map_or(Duration::from_millis(10), |r| {
            Duration::from(r).max(Duration::from_millis(1))
        })
    })
}

/// The Kafka topics of the routes and reverse routes: sluice creates them when missing.
fn route_topics(config: &Config) -> Vec<String> {
    let mut topics: Vec<String> = config
        .routes
        .iter()
        .map(|r| r.kafka_topic.clone())
        .chain(config.reverse_routes.iter().map(|r| r.kafka_topic.clone()))
        .collect();
    topics.sort();
    topics.dedup();
    topics
}

fn admin_listener(listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = listener.into_raw_fd();
    // SAFETY: `fd` is a listening socket we own and hand over.
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

/// Accepts connections, handing each to `serve` (which spawns its task), until shutdown
/// aborts it through the handle returned (which also closes the listening socket).
fn spawn_accept_loop(
    socket: TcpListener,
    name: String,
    mut serve: impl FnMut(runtime::TcpStream) + 'static,
) -> AbortHandle {
    let (abort, registration) = AbortHandle::new_pair();
    let accepting = async move {
        loop {
            match socket.accept().await {
                Ok(stream) => serve(stream),
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(listener = %name, error = %e, "accept failed");
                    runtime::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    runtime::spawn(async move {
        // Aborted is how it ends.
        let _ = Abortable::new(accepting, registration).await;
    });
    abort
}

/// Has the allocator give back what this shard freed (`alloc`'s docs, "Freed pages"), every
/// [`crate::alloc::COLLECT_EVERY`] until shutdown: a quiet shard would otherwise keep it.
async fn collect_freed_memory(shard: Rc<Shard>) {
    while !shard.shutdown.is_set() {
        runtime::sleep(crate::alloc::COLLECT_EVERY).await;
        crate::alloc::collect();
    }
}

async fn copy_producer_stats(shard: Rc<Shard>) {
    loop {
        // The client records' producers together: the process's and the routes' own.
        let stats = shard
            .route_producers
            .iter()
            .map(|(_, p)| p.stats())
            .fold(shard.producer.stats(), |sum, s| sum + s);
        let sessions = shard.sessions.producer_stats();
        let m = &shard.metrics;
        m.session_records.store(sessions.records, Ordering::Relaxed);
        m.session_batches.store(sessions.batches, Ordering::Relaxed);
        m.buffered_bytes
            .store(stats.buffered_bytes, Ordering::Relaxed);
        m.produce_requests.store(stats.requests, Ordering::Relaxed);
        m.produce_batches.store(stats.batches, Ordering::Relaxed);
        m.produce_retries.store(stats.retries, Ordering::Relaxed);
        if shard.shutdown.is_set() {
            return;
        }
        runtime::sleep(Duration::from_secs(1)).await;
    }
}

//! The client of one shard: its connections to the brokers, its view of the cluster, and the
//! admin requests (create and delete topics, list offsets).
//!
//! A [`Client`] is shard-local (`Rc` inside, cheap to clone) and holds at most one connection
//! per broker. Connections are opened on first use and replaced when they break.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, ListOffsetsRequest,
    MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, warn};

use crate::conn::{ConnectOptions, Connection};
use crate::error::{check, Context, Error, KafkaCode, Result};
use crate::metadata::{Cluster, TopicInfo};
use crate::rt;
use crate::sasl::SaslConfig;
use crate::tls::{self, TlsConfig};

/// Settings shared by everything that talks to the cluster. Names follow Kafka's client
/// properties where they exist (in brackets).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of brokers to bootstrap from (`bootstrap.servers`).
    pub bootstrap_servers: Vec<String>,
    /// Sent with every request, shows in broker logs and quotas (`client.id`).
    pub client_id: String,
    /// Limit for TCP connect plus TLS handshake (`socket.connection.setup.timeout.ms`).
    pub connect_timeout: Duration,
    /// How long a request may wait for its response before the connection is closed
    /// (`request.timeout.ms`).
    pub request_timeout: Duration,
    /// Metadata older than this is refreshed on next use (`metadata.max.age.ms`).
    pub metadata_max_age: Duration,
    /// Pause between retries of a failed request (`retry.backoff.ms`).
    pub retry_backoff: Duration,
    /// TLS to the brokers (`security.protocol` SSL or SASL_SSL), `None` for plaintext.
    pub tls: Option<TlsConfig>,
    /// SASL authentication (`security.protocol` SASL_PLAINTEXT or SASL_SSL).
    pub sasl: Option<SaslConfig>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: vec!["127.0.0.1:9092".to_owned()],
            client_id: "sluice".to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(300),
            retry_backoff: Duration::from_millis(100),
            tls: None,
            sasl: None,
        }
    }
}

/// A topic to create, with its settings (for example `cleanup.policy=compact`).
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions; -1 for the broker's default.
    pub partitions: i32,
    /// Replication factor; -1 for the broker's default.
    pub replication_factor: i16,
    /// Topic configs (`cleanup.policy`, `retention.ms`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the broker's default replication.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    /// Adds a topic config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// Which offset ListOffsets should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The offset the next record will get (the high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this one (milliseconds).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

struct Inner {
    config: ClientConfig,
    options: ConnectOptions,
    cluster: RefCell<Cluster>,
    connections: RefCell<HashMap<i32, Connection>>,
    /// A connection to a bootstrap server, used until broker ids are known.
    bootstrap: RefCell<Option<Connection>>,
    next_bootstrap: Cell<usize>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Connections' reader and writer tasks keep them alive; end them with the client.
        for conn in self.connections.get_mut().values() {
            conn.close(Error::Closed);
        }
        if let Some(conn) = self.bootstrap.get_mut() {
            conn.close(Error::Closed);
        }
    }
}

/// A shard's handle on the Kafka cluster.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap_servers", &self.inner.config.bootstrap_servers)
            .field("connections", &self.inner.connections.borrow().len())
            .finish()
    }
}

impl Client {
    /// Builds a client and checks that the cluster is reachable (it fetches the broker list).
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.bootstrap_servers.is_empty() {
            return Err(Error::Config(Arc::from("bootstrap.servers is empty")));
        }
        let tls = match &config.tls {
            Some(t) => Some(tls::client_config(t).map_err(|e| Error::Tls {
                source: Arc::new(e),
                context: Context::default(),
            })?),
            None => None,
        };
        let options = ConnectOptions {
            client_id: StrBytes::from_string(config.client_id.clone()),
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            tls_server_name: config.tls.as_ref().and_then(|t| t.server_name.clone()),
            tls,
            sasl: config.sasl.clone(),
        };
        let client = Client {
            inner: Rc::new(Inner {
                config,
                options,
                cluster: RefCell::new(Cluster::default()),
                connections: RefCell::new(HashMap::new()),
                bootstrap: RefCell::new(None),
                next_bootstrap: Cell::new(0),
            }),
        };
        client.refresh_metadata(&[]).await?;
        Ok(client)
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Asks the cluster for `topics` (and the broker list) and updates the cache. An empty
    /// slice asks for brokers only.
    pub async fn refresh_metadata(&self, topics: &[&str]) -> Result<()> {
        let mut request = MetadataRequest::default();
        request.topics = Some(
            topics
                .iter()
                .map(|t| {
                    let mut topic = MetadataRequestTopic::default();
                    topic.name = Some(TopicName(StrBytes::from_string((*t).to_owned())));
                    topic
                })
                .collect(),
        );
        let mut last_err = None;
        // Try every connection we could use: a broken one is replaced on the next turn.
        for _ in 0..3 {
            let conn = match self.any_connection().await {
                Ok(c) => c,
                Err(e) => {
                    last_err = Some(e);
                    rt::sleep(self.inner.config.retry_backoff).await;
                    continue;
                }
            };
            // Looking a topic up must not create it (v4+ can say so; older brokers decide).
            request.allow_auto_topic_creation =
                conn.version(ApiKey::Metadata).is_some_and(|v| v < 4);
            match conn.request(&request).await {
                Ok(response) => {
                    self.inner
                        .cluster
                        .borrow_mut()
                        .apply(&response, Instant::now());
                    self.forget_departed_brokers();
                    return Ok(());
                }
                Err(e) => {
                    debug!(broker = %conn.broker(), error = %e, "metadata request failed");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::NoBroker(Arc::from("no broker answered"))))
    }

    fn forget_departed_brokers(&self) {
        let cluster = self.inner.cluster.borrow();
        self.inner.connections.borrow_mut().retain(|id, conn| {
            let keep = cluster
                .broker(*id)
                .is_some_and(|addr| addr == conn.broker());
            if !keep {
                conn.close(Error::Disconnected {
                    reason: Arc::from("the broker left the cluster metadata"),
                    context: Context::broker(conn.broker()),
                });
            }
            keep
        });
    }

    /// The topic's partitions and leaders, from the cache when fresh enough, else from the
    /// cluster. Fails with [`Error::UnknownTopic`] when the cluster does not have it.
    pub async fn topic(&self, name: &str) -> Result<Rc<TopicInfo>> {
        let fresh = self
            .inner
            .cluster
            .borrow()
            .refreshed()
            .is_some_and(|t| t.elapsed() < self.inner.config.metadata_max_age);
        if fresh {
            if let Some(t) = self.inner.cluster.borrow().topic(name) {
                return Ok(t.clone());
            }
        }
        self.refresh_metadata(&[name]).await?;
        let cluster = self.inner.cluster.borrow();
        match cluster.topic(name) {
            Some(t) => Ok(t.clone()),
            None => match cluster.topic_error(name) {
                Some(KafkaCode::UnknownTopicOrPartition) | None => Err(Error::UnknownTopic {
                    topic: Arc::from(name),
                }),
                Some(code) => Err(Error::kafka(
                    code,
                    None,
                    Context::default().with_partition(name, -1),
                )),
            },
        }
    }

    /// Forgets what is cached about `topic`: call after an error that says the cluster
    /// changed (leader moved, topic deleted).
    pub fn invalidate(&self, topic: &str) {
        self.inner.cluster.borrow_mut().invalidate(topic);
    }

    /// The connection to the leader of `topic`/`partition`.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<Connection> {
        let info = self.topic(topic).await?;
        let p = info
            .partitions
            .get(usize::try_from(partition).unwrap_or(usize::MAX))
            .ok_or_else(|| Error::UnknownPartition {
                topic: Arc::from(topic),
                partition,
                count: info.partition_count(),
            })?;
        if p.leader < 0 {
            self.invalidate(topic);
            return Err(Error::kafka(
                KafkaCode::LeaderNotAvailable,
                None,
                Context::default().with_partition(topic, partition),
            ));
        }
        self.broker(p.leader).await
    }

    /// The connection to broker `id`, opened if needed.
    pub async fn broker(&self, id: i32) -> Result<Connection> {
        if let Some(conn) = self.inner.connections.borrow().get(&id) {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
        }
        let addr = self
            .inner
            .cluster
            .borrow()
            .broker(id)
            .cloned()
            .ok_or_else(|| {
                Error::NoBroker(Arc::from(format!("broker {id} is not in the metadata")))
            })?;
        // The bootstrap connection is usually to one of the brokers: adopt it.
        let bootstrap = self.inner.bootstrap.borrow().clone();
        if let Some(conn) = bootstrap.filter(|c| !c.is_closed() && *c.broker() == addr) {
            self.inner.bootstrap.borrow_mut().take();
            self.inner.connections.borrow_mut().insert(id, conn.clone());
            return Ok(conn);
        }
        let conn = self.open(&addr).await?;
        let mut conns = self.inner.connections.borrow_mut();
        // Another task may have connected meanwhile: keep one connection per broker.
        if let Some(existing) = conns.get(&id) {
            if !existing.is_closed() {
                conn.close(Error::Closed);
                return Ok(existing.clone());
            }
        }
        conns.insert(id, conn.clone());
        Ok(conn)
    }

    /// Any live connection: a broker's, else a bootstrap server's.
    pub async fn any_connection(&self) -> Result<Connection> {
        let live = self
            .inner
            .connections
            .borrow()
            .values()
            .find(|c| !c.is_closed())
            .cloned();
        if let Some(conn) = live {
            return Ok(conn);
        }
        if let Some(conn) = self.inner.bootstrap.borrow().as_ref() {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
        }
        let known: Vec<i32> = self
            .inner
            .cluster
            .borrow()
            .brokers()
            .map(|(id, _)| id)
            .collect();
        for id in known {
            match self.broker(id).await {
                Ok(conn) => return Ok(conn),
                Err(e) => debug!(broker = id, error = %e, "broker unreachable"),
            }
        }
        let servers = &self.inner.config.bootstrap_servers;
        let mut errors = Vec::new();
        for _ in 0..servers.len() {
            let i = self.inner.next_bootstrap.get() % servers.len();
            self.inner.next_bootstrap.set(i + 1);
            match self.open(&Arc::from(servers[i].as_str())).await {
                Ok(conn) => {
                    *self.inner.bootstrap.borrow_mut() = Some(conn.clone());
                    return Ok(conn);
                }
                Err(e) => {
                    warn!(server = %servers[i], error = %e, "bootstrap server unreachable");
                    errors.push(e.to_string());
                }
            }
        }
        Err(Error::NoBroker(Arc::from(errors.join("; "))))
    }

    async fn open(&self, addr: &Arc<str>) -> Result<Connection> {
        let socket = resolve(addr)?;
        Connection::open(addr.clone(), socket, &self.inner.options).await
    }

    /// Creates topics. A topic that already exists is not an error.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let mut request = CreateTopicsRequest::default();
        request.timeout_ms = self.inner.config.request_timeout.as_millis() as i32;
        for t in topics {
            let mut c = CreatableTopic::default();
            c.name = TopicName(StrBytes::from_string(t.name.clone()));
            c.num_partitions = t.partitions;
            c.replication_factor = t.replication_factor;
            for (k, v) in &t.configs {
                let mut cfg = CreatableTopicConfig::default();
                cfg.name = StrBytes::from_string(k.clone());
                cfg.value = Some(StrBytes::from_string(v.clone()));
                c.configs.push(cfg);
            }
            request.topics.push(c);
        }
        let conn = self.controller().await?;
        let response = conn.request(&request).await?;
        for r in &response.topics {
            if r.error_code == KafkaCode::TopicAlreadyExists.code() {
                continue;
            }
            check(r.error_code, r.error_message.as_deref(), || {
                Context::broker(conn.broker()).with_partition(r.name.0.as_str(), -1)
            })?;
        }
        for t in topics {
            self.invalidate(&t.name);
        }
        Ok(())
    }

    /// Deletes topics. A topic that does not exist is not an error.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<()> {
        let mut request = DeleteTopicsRequest::default();
        request.timeout_ms = self.inner.config.request_timeout.as_millis() as i32;
        request.topic_names = names
            .iter()
            .map(|n| TopicName(StrBytes::from_string((*n).to_owned())))
            .collect();
        let conn = self.controller().await?;
        let response = conn.request(&request).await?;
        for r in &response.responses {
            if r.error_code == KafkaCode::UnknownTopicOrPartition.code() {
                continue;
            }
            let name = r.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            check(r.error_code, r.error_message.as_deref(), || {
                Context::broker(conn.broker()).with_partition(&name, -1)
            })?;
        }
        for n in names {
            self.invalidate(n);
        }
        Ok(())
    }

    async fn controller(&self) -> Result<Connection> {
        let controller = self.inner.cluster.borrow().controller();
        match controller {
            Some(id) => self.broker(id).await,
            None => self.any_connection().await,
        }
    }

    /// The offset of `spec` in one partition, asked of its leader.
    pub async fn list_offset(&self, topic: &str, partition: i32, spec: OffsetSpec) -> Result<i64> {
        let conn = self.leader(topic, partition).await?;
        let mut p = ListOffsetsPartition::default();
        p.partition_index = partition;
        p.timestamp = spec.wire();
        p.current_leader_epoch = -1;
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_owned()));
        t.partitions.push(p);
        let mut request = ListOffsetsRequest::default();
        request.replica_id = BrokerId(-1);
        request.topics.push(t);
        let response = conn.request(&request).await.inspect_err(|e| {
            if e.invalidates_metadata() {
                self.invalidate(topic);
            }
        })?;
        let ctx = || Context::broker(conn.broker()).with_partition(topic, partition);
        let p = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| Error::protocol("ListOffsets answered without our partition", ctx()))?;
        check(p.error_code, None, ctx).inspect_err(|e| {
            if e.invalidates_metadata() {
                self.invalidate(topic);
            }
        })?;
        Ok(p.offset)
    }
}

/// Resolves `host:port`. Done once per connection; an IP literal does not block.
fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| Error::io(e, Context::broker(&Arc::from(addr))))?
        .next()
        .ok_or_else(|| Error::NoBroker(Arc::from(format!("{addr} resolves to no address"))))
}

/// Retries `op` with the client's backoff while it fails with a retriable error, until
/// `deadline`.
pub(crate) async fn retry<T, F, Fut>(backoff: Duration, deadline: Instant, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retriable() && Instant::now() + backoff < deadline => {
                debug!(error = %e, "retrying");
                rt::sleep(backoff).await;
            }
            Err(e) => return Err(e),
        }
    }
}

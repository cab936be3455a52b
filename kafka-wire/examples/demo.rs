//! Produces a few records to a topic with kafka-wire and reads them back with its fetch.
//!
//! ```text
//! cargo run --release -p kafka-wire --example demo -- --bootstrap 127.0.0.1:9092 --topic demo
//! ```

use std::time::Duration;

use kafka_wire::fetch::OffsetReset;
use kafka_wire::{
    Client, ClientConfig, FetchOptions, NewTopic, OffsetSpec, PartitionReader, Producer,
    ProducerConfig, ProducerRecord,
};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn main() -> anyhow::Result<()> {
    let bootstrap = arg("--bootstrap", "127.0.0.1:9092");
    let topic = arg("--topic", "mqtt-messages");
    let count: usize = arg("--count", "3").parse()?;
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let client = Client::connect(ClientConfig {
                bootstrap_servers: vec![bootstrap.clone()],
                client_id: "kafka-wire-demo".into(),
                ..ClientConfig::default()
            })
            .await?;
            client.create_topics(&[NewTopic::new(&topic, 1)]).await?;
            let start = client.list_offset(&topic, 0, OffsetSpec::Earliest).await?;
            let producer = Producer::new(client.clone(), ProducerConfig::default()).await?;
            let mut pending = Vec::new();
            for i in 0..count {
                let value = format!("hello from kafka-wire #{i}");
                let record = ProducerRecord::new(&topic, value.as_bytes())
                    .key(b"demo")
                    .partition(0);
                pending.push(producer.send(record).await?);
            }
            for d in pending {
                let m = d.await?;
                println!("produced to {topic}/{} at offset {}", m.partition, m.offset);
            }
            producer.close(Duration::from_secs(5)).await;
            let options = FetchOptions::default();
            let mut reader =
                PartitionReader::at(client, &topic, 0, start, options, OffsetReset::Earliest);
            loop {
                let fetched = reader.poll().await?;
                for r in &fetched.records {
                    let value = r.value.as_deref().map(String::from_utf8_lossy);
                    println!("fetched offset {}: {}", r.offset, value.unwrap_or_default());
                }
                if reader.position() >= fetched.high_watermark {
                    break;
                }
            }
            anyhow::Ok(())
        })
        .map_err(|e| anyhow::anyhow!("starting the shard: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("the shard panicked: {e:?}"))?
}

//! Loopback NATS JetStream KV measurement: starts a `nats-server -js` through the test harness,
//! then measures sequential latency (p50/p99) of `put`, `get` and compare-and-swap `update`, and
//! throughput with 32 concurrent writers. Prints a table; runs in well under 30 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hive_kv::nats::{NatsOptions, NatsStore};
use hive_kv::testing::NatsServer;
use hive_kv::{Bucket, BucketConfig, KvStore};

const SEQUENTIAL_OPS: usize = 3000;
const CONCURRENT_TASKS: usize = 32;
const CONCURRENT_FOR: Duration = Duration::from_secs(3);

fn value() -> Bytes {
    Bytes::from(vec![b'x'; 256])
}

fn report(name: &str, mut samples: Vec<Duration>, total: Duration) {
    samples.sort();
    let pct = |p: f64| {
        let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[idx]
    };
    println!(
        "{name:<24} n={:<6} p50={:>9.1?} p99={:>9.1?} {:>9.0} ops/s",
        samples.len(),
        pct(0.50),
        pct(0.99),
        samples.len() as f64 / total.as_secs_f64()
    );
}

async fn sequential(bucket: &dyn Bucket) {
    let value = value();
    let mut rev = bucket.put("cas", value.clone()).await.expect("seed");
    bucket.put("get", value.clone()).await.expect("seed");

    let mut samples = Vec::with_capacity(SEQUENTIAL_OPS);
    let start = Instant::now();
    for i in 0..SEQUENTIAL_OPS {
        let t = Instant::now();
        bucket
            .put(&format!("put.{}", i % 100), value.clone())
            .await
            .expect("put");
        samples.push(t.elapsed());
    }
    report("put (sequential)", samples, start.elapsed());

    let mut samples = Vec::with_capacity(SEQUENTIAL_OPS);
    let start = Instant::now();
    for _ in 0..SEQUENTIAL_OPS {
        let t = Instant::now();
        bucket.get("get").await.expect("get").expect("present");
        samples.push(t.elapsed());
    }
    report("get (sequential)", samples, start.elapsed());

    let mut samples = Vec::with_capacity(SEQUENTIAL_OPS);
    let start = Instant::now();
    for _ in 0..SEQUENTIAL_OPS {
        let t = Instant::now();
        rev = bucket.update("cas", value.clone(), rev).await.expect("cas");
        samples.push(t.elapsed());
    }
    report("cas update (sequential)", samples, start.elapsed());
}

async fn concurrent_puts(bucket: Arc<dyn Bucket>) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|t| {
            let bucket = bucket.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let value = value();
                let mut i = 0;
                while start.elapsed() < CONCURRENT_FOR {
                    let s = Instant::now();
                    bucket
                        .put(&format!("c{t}.{}", i % 50), value.clone())
                        .await
                        .expect("put");
                    samples.push(s.elapsed());
                    i += 1;
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    report(
        &format!("put ({CONCURRENT_TASKS} concurrent)"),
        all,
        start.elapsed(),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter here.
    let server = NatsServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let store = NatsStore::connect(&server.url(), NatsOptions::default())
            .await
            .expect("connect");
        let bucket = store
            .create_or_open(&BucketConfig::new("bench").with_history(10))
            .await
            .expect("bucket");
        println!(
            "JetStream KV over loopback ({}), 256-byte values, file storage:",
            server.url()
        );
        sequential(bucket.as_ref()).await;
        concurrent_puts(bucket).await;
    });
}

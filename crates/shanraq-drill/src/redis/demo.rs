//! The Redis part of `shanraq demo`: a three-node group from the rendered redis.conf, a
//! `SET`+`WAIT 1` writer, kill -9 of the master, and the timeline the engine reported, with
//! the measured time until writes were acknowledged again and the writes lost.

use std::time::Duration;

use shanraq_ha::adapters::redis::RedisDriverEvent;
use shanraq_ha::redis::Millis;

use super::bench::{RedisFault, describe, run_once};
use super::cluster::{LocalRedis, RedisOptions};
use super::error::RedisDrillError;

/// Runs the Redis demo and prints its timeline to stdout.
pub async fn run() -> Result<(), RedisDrillError> {
    println!("\n== Redis: 3 redis-server processes from the rendered redis.conf ==");
    let mut group = LocalRedis::start(&RedisOptions::default(), None).await?;
    let master = group.wait_converged(Duration::from_secs(30)).await?;
    println!(
        "master {master}, every replica streaming; writing SET + WAIT 1 and killing {master} (kill -9)"
    );
    let mut events = group.handle().subscribe();
    let started: Millis = group.now();
    let run = run_once(&mut group, RedisFault::Kill, 1).await?;
    let mut lines = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let RedisDriverEvent::Engine(event) = event
            && event.at >= started
        {
            lines.push(format!(
                "  +{:>6} ms  {}",
                event.at.since(started),
                shanraq_ha::engine::Notable::message(&event)
            ));
        }
    }
    for line in lines {
        println!("{line}");
    }
    println!("{}", describe(&run));
    group.stop_driver().await;
    Ok(())
}

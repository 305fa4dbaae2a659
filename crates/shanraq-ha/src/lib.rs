//! The HA brain: sans-IO state machines for failover and switchover, election, fencing
//! epochs, the Kafka rolling-restart planner and the objectives evaluator, with IO adapters at
//! its edge.

pub mod adapters;
pub mod claim;
pub mod core;
pub mod dispatch;
pub mod driver;
pub mod engine;
pub mod events;
pub mod kafka;
pub mod machine;
pub mod objectives;
pub mod postgres;
pub mod probe;
pub mod record;
pub mod redis;
pub mod state;
pub mod switchover;
pub mod wire;

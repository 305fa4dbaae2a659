//! IO at the engine's edge: the HTTP client of the instance managers, and the async driver
//! that probes them, feeds the engine, executes its commands and persists its state.

pub mod custody;
pub mod driver;
pub mod instance_client;
pub mod redis;
pub mod state_store;

#[cfg(test)]
mod tests;

//! IO at each engine's edge, its `driver::Adapter`: PostgreSQL's (the HTTP client of the
//! instance managers, probes that renew the primary's lease, the router) and Redis's (redis-rs).

pub mod driver;
pub mod instance_client;
pub mod redis;
pub mod route;

#[cfg(test)]
mod tests;

//! Adapter tests against small HTTP servers on 127.0.0.1 that speak the instance manager's
//! wire contract (the real manager lives in `shanraq-instance`; end-to-end runs against real
//! PostgreSQL belong to the integration tests).

mod fake_instance;

mod client;
mod driver;
mod state_store;

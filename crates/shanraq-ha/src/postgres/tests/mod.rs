//! Engine tests: fixture builders for instance reports, a small harness with an injected
//! clock, and one file per behaviour the peers get wrong (see the project's failure anchors).

mod fixtures;

mod bootstrap;
mod durability;
mod election_rules;
mod failover;
mod restart;
mod split_brain;
mod switchover;
mod tokens;

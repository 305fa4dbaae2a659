//! Secrets the cluster needs. Rendering stays pure: it says which secrets exist, their fixed keys
//! and which keys hold generated values; the operator generates those values once, creates the
//! Secret if it is absent, and never regenerates or rewrites it.

use std::collections::BTreeMap;

/// One Secret to create if absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretTemplate {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Keys with a fixed value (for example `username`).
    pub fixed: BTreeMap<String, String>,
    /// Keys whose value the operator generates: key -> length in characters.
    pub generated: BTreeMap<String, usize>,
}

//! Random passwords and tokens for throwaway servers: never a fixed string that could end up
//! copied into a real deployment.

use rand::distr::{Alphanumeric, SampleString};

/// A random alphanumeric string of `len` characters.
pub fn random_secret(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

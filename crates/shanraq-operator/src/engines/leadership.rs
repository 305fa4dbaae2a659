//! Leader election on a `coordination.k8s.io` Lease, built for fencing: a lease tells a process
//! that it *was* the leader, never that it still is, so every engine checks [`Leadership`] at
//! the point of action (`shanraq_ha::driver::custody::Authority`) against a deadline kept on
//! this process's monotonic clock.
//!
//! - The holder renews every third of the lease duration. A renewal that succeeds makes the
//!   holder valid until `start + duration - margin`, where `start` is taken *before* the
//!   request was sent: a pause of the process (SIGSTOP, a stall, a throttled container) only
//!   ever shortens what it believes, never lengthens it.
//! - A candidate takes a Lease held by someone else only after it saw the same record, unchanged,
//!   for a whole lease duration on its own monotonic clock (as client-go does): no comparison of
//!   two machines' wall clocks. Since it first saw the holder's last record after the holder
//!   wrote it, it takes over no sooner than `start + duration`, a full `margin` after the holder
//!   stopped believing itself leader.
//! - Every write is a `replace` carrying the resourceVersion read just before, so two
//!   candidates can never both win one transition.
//! - On shutdown the holder releases the Lease (empty holder), and a standby takes it at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use shanraq_ha::driver::custody::{Authority, Denied};
use tokio::sync::watch;

/// Whether this process may act as the leader, and until when.
#[derive(Clone)]
pub struct Leadership {
    shared: Arc<Shared>,
}

struct Shared {
    /// `None`: never leader, or leadership given up. `Some(deadline)`: valid before it.
    valid_until: Mutex<Option<Instant>>,
    /// Without leader election: always valid.
    unconditional: bool,
    leading: watch::Sender<bool>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("unconditional", &self.shared.unconditional)
            .field("leading", &*self.shared.leading.borrow())
            .finish()
    }
}

/// Two handles are equal when they share their state (settings compare by identity).
impl PartialEq for Leadership {
    fn eq(&self, other: &Leadership) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for Leadership {}

impl Default for Leadership {
    /// Without leader election (one replica, tests): always allowed.
    fn default() -> Self {
        Leadership::with(true)
    }
}

impl Leadership {
    fn with(unconditional: bool) -> Leadership {
        let (leading, _) = watch::channel(unconditional);
        Leadership {
            shared: Arc::new(Shared {
                valid_until: Mutex::new(None),
                unconditional,
                leading,
            }),
        }
    }

    /// Not leading until an [`Elector`] wins the Lease.
    pub fn elected() -> Leadership {
        Leadership::with(false)
    }

    /// Follows whether this process leads (flips to `false` at the deadline, without waiting
    /// for the API server).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.shared.leading.subscribe()
    }

    /// Whether this process may act at `now`.
    pub fn valid_at(&self, now: Instant) -> bool {
        self.shared.unconditional || self.deadline().is_some_and(|until| now < until)
    }

    fn deadline(&self) -> Option<Instant> {
        *self
            .shared
            .valid_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_deadline(&self, until: Option<Instant>) {
        *self
            .shared
            .valid_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = until;
        let leading = until.is_some_and(|until| Instant::now() < until);
        self.shared.leading.send_if_modified(|current| {
            let changed = *current != leading;
            *current = leading;
            changed
        });
    }
}

/// Why this process may not act as the leader right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotLeader {
    #[error("the leader Lease lapsed {lapsed_ms} ms ago on this process's clock")]
    Lapsed { lapsed_ms: u128 },
    #[error("this operator does not hold the leader Lease")]
    NotHeld,
}

impl Leadership {
    /// `Ok` while this process may act at `now`; otherwise why not.
    pub fn authorise(&self, now: Instant) -> Result<(), NotLeader> {
        if self.valid_at(now) {
            return Ok(());
        }
        Err(match self.deadline() {
            Some(until) => NotLeader::Lapsed {
                lapsed_ms: now.saturating_duration_since(until).as_millis(),
            },
            None => NotLeader::NotHeld,
        })
    }
}

impl Authority for Leadership {
    fn check(&self) -> Result<(), Denied> {
        Ok(self.authorise(Instant::now())?)
    }
}

/// Timings of the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// `leaseDurationSeconds`: how long a silent holder keeps the Lease.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How often a standby looks at the Lease (and it looks again the moment the holder's
    /// record would expire).
    pub retry_every: Duration,
    /// How much sooner than a standby could take over the holder stops acting.
    pub margin: Duration,
}

impl Timings {
    /// Renew every third of the duration; stop acting a third before a standby may take over;
    /// a standby looks every 2 s (at most every third of the duration).
    pub fn for_duration(duration: Duration) -> Timings {
        Timings {
            duration,
            renew_every: duration / 3,
            retry_every: (duration / 3).min(Duration::from_secs(2)),
            margin: duration / 3,
        }
    }
}

/// Campaigns for, renews and releases one Lease, publishing into a [`Leadership`].
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    leadership: Leadership,
    /// Another holder's record as first seen: (resourceVersion, when).
    observed: Option<(String, Instant)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("cannot read Lease {name}: {source}")]
    Read {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write Lease {name}: {source}")]
    Write {
        name: String,
        #[source]
        source: kube::Error,
    },
}

fn micro_now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl Elector {
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        timings: Timings,
        leadership: Leadership,
    ) -> Elector {
        Elector {
            api,
            name: name.into(),
            identity: identity.into(),
            timings,
            leadership,
            observed: None,
        }
    }

    /// Campaigns and renews until `stop`, then releases the Lease if held.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            let started = Instant::now();
            match self.round().await {
                Ok(true) => {
                    let until = started + self.timings.duration.saturating_sub(self.timings.margin);
                    if !self.leadership.valid_at(Instant::now()) {
                        tracing::info!(identity = %self.identity, lease = %self.name, "acquired the leader Lease");
                    }
                    self.leadership.set_deadline(Some(until));
                }
                Ok(false) => {
                    if self.leadership.deadline().is_some() {
                        tracing::warn!(identity = %self.identity, lease = %self.name, "the leader Lease is held by another replica");
                    }
                    self.leadership.set_deadline(None);
                }
                Err(error) => tracing::warn!(%error, "leader election round failed"),
            }
            // Wake at the next round, or at the deadline if it comes first, so `leading` flips
            // to false on time even when the API server does not answer; a standby also wakes
            // when the record it watches would expire.
            let every = if self.leadership.deadline().is_some() {
                self.timings.renew_every
            } else {
                self.timings.retry_every
            };
            let mut wake = Instant::now() + every;
            if let Some(until) = self
                .leadership
                .deadline()
                .filter(|until| *until > Instant::now())
            {
                wake = wake.min(until);
            }
            if let Some((_, since)) = &self.observed {
                let expiry = *since + self.timings.duration;
                if expiry > Instant::now() {
                    wake = wake.min(expiry);
                }
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake.into()) => {}
                _ = stop.changed() => {}
            }
            if let Some(until) = self.leadership.deadline()
                && Instant::now() >= until
            {
                tracing::warn!(identity = %self.identity, lease = %self.name, "the leader Lease was not renewed in time: leadership lost");
                self.leadership.set_deadline(None);
            }
        }
        self.release().await;
    }

    /// One look at the Lease: true when this process holds it after the round.
    async fn round(&mut self) -> Result<bool, ElectionError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| ElectionError::Read {
                name: self.name.clone(),
                source,
            })?;
        let Some(mut lease) = current else {
            return self.create().await;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let now = micro_now();
        match holder.as_deref() {
            Some(holder) if holder == self.identity => {
                spec.renew_time = Some(now);
                spec.lease_duration_seconds = Some(self.duration_seconds());
            }
            Some(_) => {
                let seen_for = match &self.observed {
                    Some((seen, since)) if *seen == version => since.elapsed(),
                    _ => {
                        self.observed = Some((version, Instant::now()));
                        Duration::ZERO
                    }
                };
                let their_duration = spec
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(self.timings.duration, Duration::from_secs);
                if seen_for < their_duration {
                    return Ok(false);
                }
                self.take(spec, now);
            }
            None => self.take(spec, now),
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observed = None;
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(ElectionError::Write {
                name: self.name.clone(),
                source,
            }),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.timings.duration.as_secs()).unwrap_or(i32::MAX)
    }

    fn take(&self, spec: &mut LeaseSpec, now: MicroTime) {
        spec.holder_identity = Some(self.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.duration_seconds());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }

    async fn create(&mut self) -> Result<bool, ElectionError> {
        let now = micro_now();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_duration_seconds: Some(self.duration_seconds()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(ElectionError::Write {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// Gives the Lease up (empty holder), so a standby takes it at once.
    async fn release(&mut self) {
        let was_leading = self.leadership.deadline().is_some();
        self.leadership.set_deadline(None);
        if !was_leading {
            return;
        }
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "Lease released"),
            Err(error) => tracing::warn!(%error, lease = %self.name, "cannot release the Lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lapsed_deadline_refuses_at_the_point_of_action() {
        let leadership = Leadership::elected();
        assert!(leadership.check().is_err(), "not elected yet");
        let mut leading = leadership.subscribe();
        leadership.set_deadline(Some(Instant::now() + Duration::from_secs(60)));
        assert!(leadership.check().is_ok());
        assert!(*leading.borrow_and_update());
        leadership.set_deadline(Some(Instant::now() - Duration::from_millis(1)));
        let refused = leadership.check().expect_err("lapsed");
        assert!(refused.to_string().contains("lapsed"), "{refused}");
        assert!(!*leading.borrow_and_update());
    }

    #[test]
    fn without_election_it_is_always_allowed() {
        let leadership = Leadership::default();
        assert!(leadership.check().is_ok());
        assert!(*leadership.subscribe().borrow());
    }

    #[test]
    fn the_holder_stops_a_margin_before_a_standby_may_take_over() {
        let timings = Timings::for_duration(Duration::from_secs(15));
        assert_eq!(timings.renew_every, Duration::from_secs(5));
        assert_eq!(timings.retry_every, Duration::from_secs(2));
        assert!(timings.duration - timings.margin < timings.duration);
        assert!(timings.renew_every < timings.duration - timings.margin);
    }
}

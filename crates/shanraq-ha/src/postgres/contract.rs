//! How a command to an instance manager ended, as PostgreSQL's adapter reports it to the one
//! engine (`crate::machine`): the result, and the status the instance answered with.

use super::CommandError;
use crate::wire::InstanceStatus;

/// How one command to an instance manager ended, with the status it answered with.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub result: Result<(), CommandError>,
    pub status: Option<InstanceStatus>,
}

impl crate::engine::Outcome for Outcome {
    fn not_executed(reason: String) -> Outcome {
        Outcome {
            result: Err(CommandError::NotExecuted(reason)),
            status: None,
        }
    }

    fn failure(&self) -> Option<String> {
        self.result.failure()
    }
}

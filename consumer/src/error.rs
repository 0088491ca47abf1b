//! What can go wrong with a job's batch, and what is done about it. Each step reports what happened (a
//! [`Failure`]); [`classify`] alone decides what follows (a [`Decision`]), so the same failure gets the same answer
//! wherever it happens, and every call site says where it asks.

use crate::relay::RelayError;
use chrono::TimeDelta;
use common::ledger::LedgerError;
use common::queue::QueueError;
use common::store::StoreError;
use common::zuora::ZuoraError;

/// A call that failed: Zuora, S3, a queue or the ledger.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// Zuora.
    #[error(transparent)]
    Zuora(#[from] ZuoraError),
    /// S3 (multipart).
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// S3 (small objects).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A queue.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The ledger.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl WorkError {
    /// True when doing the work again cannot help (S3 access denied, no such bucket).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Store(e) | Self::Relay(RelayError::Store(e)) | Self::Ledger(LedgerError::Store(e)) => {
                e.is_permanent()
            }
            Self::Zuora(_) | Self::Relay(_) | Self::Queue(_) | Self::Ledger(_) => false,
        }
    }
}

/// What went wrong with a batch.
#[derive(Debug)]
pub enum Failure {
    /// Zuora's answer cannot be exported as it is (no record count, an id that is not Zuora's, an object not in the
    /// catalogue, a file over Zuora's download limit).
    Invalid(String),
    /// A downloaded file is not the export it should be: it failed its checks, its gzip stream is cut, or the
    /// batch's records counted differ from Zuora's count.
    Rejected(String),
    /// A call failed.
    Call(WorkError),
    /// Zuora answered 404 for a file of `object`'s batch, `age` after its job ran.
    NotFound {
        /// The catalogue's name of the object.
        object: String,
        /// Whether the batch was a first load (asked for again in full).
        full: bool,
        /// The file.
        file_id: String,
        /// Since the job ran.
        age: TimeDelta,
    },
}

impl<E: Into<WorkError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Call(e.into())
    }
}

/// What follows a failure.
#[derive(Debug)]
pub enum Decision {
    /// Relay the batch's files again, now (an attempt is left).
    RetryNow(String),
    /// Zuora purged the files: the object's window is asked for again.
    AskZuoraAgain {
        /// The catalogue's name of the object.
        object: String,
        /// Whether it was a first load.
        full: bool,
    },
    /// Doing it again cannot help: the job goes to the jobs DLQ with this reason.
    DeadLetter(String),
    /// It may pass: the message is left to be received again.
    Later(WorkError),
}

/// The attempt a failure happened in: one of the relay's `consumer.file_attempts` at a batch's files, or
/// [`Attempt::ONLY`] for a step that is not tried again at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// This attempt, from 1.
    pub number: u32,
    /// How many there may be.
    pub of: u32,
}

impl Attempt {
    /// A step tried once per delivery of the job's message.
    pub const ONLY: Self = Self { number: 1, of: 1 };

    /// The first of `of` attempts.
    pub fn first(of: u32) -> Self {
        Self { number: 1, of }
    }

    /// The attempt after this one.
    pub fn next(self) -> Self {
        Self { number: self.number + 1, ..self }
    }

    fn any_left(self) -> bool {
        self.number < self.of
    }
}

/// A file missing (404) sooner than this after its job ran was not purged (Zuora keeps files about 72 hours):
/// the path is wrong, and asking again would only fail again.
const PURGED_AFTER: TimeDelta = TimeDelta::hours(24);

/// What follows `failure` in `attempt`: a file that is not the export it should be, or a transfer that broke, is
/// relayed again while attempts are left; then a rejected file dead-letters the job, and a broken transfer leaves
/// its message for a later delivery. A failure that cannot pass (invalid answers, S3 access denied) dead-letters
/// the job at once instead of downloading the files again on every delivery; a purged file asks Zuora again.
pub fn classify(failure: Failure, attempt: Attempt) -> Decision {
    match failure {
        Failure::Invalid(reason) => Decision::DeadLetter(reason),
        Failure::Rejected(reason) if attempt.any_left() => Decision::RetryNow(reason),
        Failure::Rejected(reason) => Decision::DeadLetter(format!(
            "verification failed in {} attempts ({reason}); nothing published",
            attempt.of
        )),
        Failure::Call(e) if e.is_permanent() => Decision::DeadLetter(e.to_string()),
        Failure::Call(e) if attempt.any_left() => Decision::RetryNow(e.to_string()),
        Failure::Call(e) => Decision::Later(e),
        Failure::NotFound { file_id, age, .. } if age < PURGED_AFTER => Decision::DeadLetter(format!(
            "file {file_id} not found (404) {} h after its job ran; Zuora keeps files about 72 h, so the download path \
             is wrong (zuora.file_path?)",
            age.num_hours()
        )),
        Failure::NotFound { object, full, .. } => Decision::AskZuoraAgain { object, full },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> WorkError {
        let transient = StoreError::transient("PutObject", "lake", "k", "AccessDenied");
        StoreError { kind: common::store::StoreErrorKind::Permanent, ..transient }.into()
    }

    fn broken() -> WorkError {
        StoreError::transient("PutObject", "lake", "k", "connection reset").into()
    }

    #[test]
    fn a_rejected_file_is_relayed_again_while_attempts_are_left_then_dead_letters_the_job() {
        let first = Attempt::first(3);
        assert!(matches!(classify(Failure::Rejected("x".into()), first), Decision::RetryNow(r) if r == "x"));
        let last = first.next().next();
        match classify(Failure::Rejected("x".into()), last) {
            Decision::DeadLetter(reason) => {
                assert!(reason.contains("verification failed in 3 attempts (x)"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_broken_call_is_tried_again_now_then_later_and_one_that_cannot_pass_dead_letters_at_once() {
        assert!(matches!(classify(Failure::Call(broken()), Attempt::first(2)), Decision::RetryNow(_)));
        assert!(matches!(classify(Failure::Call(broken()), Attempt::ONLY), Decision::Later(_)));
        match classify(Failure::Call(denied()), Attempt::first(2)) {
            Decision::DeadLetter(reason) => assert!(reason.contains("AccessDenied"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(Failure::Invalid("no recordCount".into()), Attempt::first(2)),
            Decision::DeadLetter(_)
        ));
    }

    #[test]
    fn a_missing_file_is_asked_for_again_only_once_zuora_may_have_purged_it() {
        let missing = |hours| Failure::NotFound {
            object: "Account".into(),
            full: true,
            file_id: "f".into(),
            age: TimeDelta::hours(hours),
        };
        match classify(missing(2), Attempt::ONLY) {
            Decision::DeadLetter(reason) => assert!(reason.contains("download path is wrong"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match classify(missing(80), Attempt::ONLY) {
            Decision::AskZuoraAgain { object, full } => assert_eq!((object.as_str(), full), ("Account", true)),
            other => panic!("{other:?}"),
        }
    }
}

//! How a command ended, as its exit code tells a person or a scheduler (docs/operations.md, "Exit codes"): an
//! Airflow task or a shell loop can tell "try again later" from "fix something first" without reading the text.

use crate::catalogue::CatalogueError;
use crate::config::ConfigError;
use crate::ledger::LedgerError;
use crate::queue::QueueError;
use crate::store::StoreError;
use crate::zuora::ZuoraError;
use std::error::Error;
use std::process::ExitCode;

/// The outcome of a command, one exit code each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Success,
    /// 1: a check found a problem: `status` an object whose data is older than the threshold, `audit` a row the
    /// lake does not hold as Zuora does.
    Found,
    /// 2: the command line or the configuration is wrong, or the deployment cannot work as configured (missing
    /// secret, credentials refused, access denied, no such queue or bucket). Fix it; running again will not help.
    Usage,
    /// 3: the request itself was refused (by the producer's checks or by Zuora). Do not retry it as it is.
    Refused,
    /// 4: a failure that may pass (AWS or Zuora unreachable, throttled or busy). Retry later.
    Temporary,
    /// 130: stopped at once by a second Ctrl-C.
    Interrupted,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Found => 1,
            Self::Usage => 2,
            Self::Refused => 3,
            Self::Temporary => 4,
            Self::Interrupted => 130,
        }
    }

    /// The exit of a failure, from the first error of its chain (outermost first) that says what it is; a failure
    /// nothing classifies counts as temporary.
    pub fn of_failure<'a>(chain: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> Self {
        chain.into_iter().find_map(Self::of_error).unwrap_or(Self::Temporary)
    }

    fn of_error(error: &(dyn Error + 'static)) -> Option<Self> {
        if error.is::<ConfigError>() || error.is::<CatalogueError>() {
            return Some(Self::Usage);
        }
        if let Some(LedgerError::Store(store)) = error.downcast_ref::<LedgerError>() {
            return Self::of_error(store);
        }
        if let Some(zuora) = error.downcast_ref::<ZuoraError>() {
            return Some(match zuora {
                ZuoraError::NoSecret | ZuoraError::Unauthorized { .. } => Self::Usage,
                e if e.is_retryable() => Self::Temporary,
                _ => Self::Refused,
            });
        }
        let permanent = match (error.downcast_ref::<StoreError>(), error.downcast_ref::<QueueError>()) {
            (Some(store), _) => Some(store.is_permanent()),
            (_, Some(queue)) => Some(queue.is_permanent()),
            _ => None,
        };
        permanent.map(|permanent| if permanent { Self::Usage } else { Self::Temporary })
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit_of(error: &(dyn Error + 'static)) -> Exit {
        Exit::of_failure(std::iter::successors(Some(error), |e: &&(dyn Error + 'static)| (*e).source()))
    }

    #[test]
    fn each_failure_has_the_exit_that_says_whether_to_retry() {
        let busy = ZuoraError::Api { code: "90028".into(), message: "too many jobs".into() };
        let bad_query = ZuoraError::Api { code: "90005".into(), message: "bad query".into() };
        let denied = StoreError {
            kind: crate::store::StoreErrorKind::Permanent,
            ..StoreError::transient("GetObject", "b", "k", "denied")
        };
        let mut queue_denied = QueueError::new("SendMessage", "q", "AccessDenied");
        queue_denied.kind = crate::queue::QueueErrorKind::Permanent;
        let cases: [(&(dyn Error + 'static), Exit); 7] = [
            (&busy, Exit::Temporary),
            (&bad_query, Exit::Refused),
            (&ZuoraError::NoSecret, Exit::Usage),
            (&StoreError::transient("GetObject", "b", "k", "timeout"), Exit::Temporary),
            (&denied, Exit::Usage),
            (&queue_denied, Exit::Usage),
            (&QueueError::new("SendMessage", "q", "throttled"), Exit::Temporary),
        ];
        for (error, exit) in cases {
            assert_eq!(exit_of(error), exit, "{error}");
        }
        let config = crate::config::Config::parse("[zuora]\n", "x.toml", None).unwrap_err();
        assert_eq!(exit_of(&config), Exit::Usage);
        assert_eq!(
            [Exit::Success, Exit::Found, Exit::Usage, Exit::Refused, Exit::Temporary].map(Exit::code),
            [0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn the_first_classified_error_of_a_chain_decides() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading the ledger")]
        struct Context(#[source] StoreError);
        let wrapped = Context(StoreError::transient("GetObject", "b", "k", "timeout"));
        assert_eq!(exit_of(&wrapped), Exit::Temporary);
        #[derive(Debug, thiserror::Error)]
        #[error("something nobody classified")]
        struct Unknown;
        assert_eq!(exit_of(&Unknown), Exit::Temporary);
    }
}

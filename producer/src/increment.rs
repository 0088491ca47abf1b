//! The session's increments, and why none is ever lost.
//!
//! # The invariant
//! Every window of the stateful session reaches the ledger: Zuora never runs an increment the producer does not
//! come to know of, whichever request submits it, however often it is delivered, re-run or killed. Three things
//! keep it, each covering what the one before cannot:
//!
//! 1. **The session's key** ([`increment_key`]). An increment is submitted under a key named after the session's
//!    mark (its last recorded increment's job), not after the request: until that job is recorded and the mark
//!    moves, every request (a redelivery, a redriven copy with a new message id, the schedule's next message, a
//!    `producer submit` run again after a crash) gets the same job back from Zuora's `Idempotency-Key`. So there is
//!    at most one increment per mark, and it is the one the next recorder finds.
//! 2. **Claims** (`session/claims/<key>.json`). Before submitting under the key a request claims it. A request that
//!    finds the key's job recorded by another request (which stopped before moving the mark) enqueues it, moves
//!    the mark past it and submits its own; one that finds the job unrecorded under another's claim knows that
//!    request submitted and died, adopts the job, moves the mark to its start, then exports from there to now.
//! 3. **Reconciliation** (`Producer::reconcile`, before every increment and at start-up). Zuora's last completed
//!    job of the session is compared with the ledger's records; one with no record (submitted by a process that
//!    died before writing anything) is adopted: recorded, enqueued, the mark moved to its start.
//!
//! The key names the mark's job rather than its end: two increments can end at the same instant (an adopted one
//! and the one submitted at once after it, queued at Zuora), and a key named after the time would name the second
//! again. Tests: `producer/tests/reruns.rs`, `producer/tests/serving.rs`; the chaos harness's check (a) over every
//! seed (docs/reliability.md).

use common::config::SessionConfig;
use common::ledger::SessionMark;

/// The `Idempotency-Key` of the session's next increment (the invariant's first part): the session, and the
/// job of its mark (a mark written before marks named their job: its end); `start` before the first increment.
pub fn increment_key(session: &SessionConfig, mark: Option<&SessionMark>) -> String {
    let clip = |s: &str| s.chars().take(64).collect::<String>();
    let after = match mark {
        None => "start".to_owned(),
        Some(SessionMark { job_id: Some(job_id), .. }) => format!("job-{job_id}"),
        Some(SessionMark { to, job_id: None, .. }) => to.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    };
    format!("zle:{}:{}:increment-after:{after}", clip(&session.partner), clip(&session.project))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_ending_at_the_same_instant_get_keys_of_their_own() {
        let session = SessionConfig {
            partner: "p".into(),
            project: "q".into(),
            version: "1.1".into(),
            increment_job_name: "zle-increment".into(),
            file_format: common::config::FileFormat::Csv,
        };
        let to: chrono::DateTime<chrono::Utc> = "2026-03-03T05:32:50Z".parse().unwrap();
        let after = |job: &str| {
            increment_key(&session, Some(&SessionMark { to, job_id: Some(job.into()), ..SessionMark::default() }))
        };
        assert_ne!(after("adopted"), after("next"), "the key after the adopted job is not the key after the next");
        assert_eq!(after("next"), after("next"), "the same mark, the same key: retries get the same job");
        assert_eq!(increment_key(&session, None), "zle:p:q:increment-after:start");
        let legacy = increment_key(&session, Some(&SessionMark { to, job_id: None, ..SessionMark::default() }));
        assert_eq!(legacy, "zle:p:q:increment-after:2026-03-03T05:32:50.000000Z");
    }
}

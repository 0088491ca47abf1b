//! Completion notifications: when a job with a `notifyUrl` completes, Zuora calls the URL with `${JOBID}` and
//! `${STATUS}` filled in (`Completed`). The simulator calls it once per job, with a GET, and loses a share of the
//! calls when told to (`notify_lost`): the exporter must not depend on them.

use super::*;
use std::sync::Weak;

impl Sim {
    /// The URLs of the notifications due now, each job's once (marked sent here), and when the next one falls
    /// due.
    fn due_notifications(&self) -> (Vec<String>, Option<DateTime<Utc>>) {
        let now = self.clock.now();
        let mut jobs = lock(&self.jobs);
        let (mut due, mut next) = (Vec::new(), None::<DateTime<Utc>>);
        for job in jobs.list.iter_mut().filter(|j| j.notify_url.is_some() && !j.notified) {
            match job.status(now) {
                "submitted" | "executing" => next = Some(next.map_or(job.end_at, |n| n.min(job.end_at))),
                "completed" => {
                    job.notified = true;
                    let url = job.notify_url.as_deref().unwrap_or_default();
                    due.push(url.replace("${JOBID}", &job.id).replace("${STATUS}", "Completed"));
                }
                // Zuora documents the call for a completed job only.
                _ => job.notified = true,
            }
        }
        (due, next)
    }

    /// Wakes the notifier: a job with a `notifyUrl` was submitted, or the clock moved.
    pub(crate) fn wake_notifier(&self) {
        self.notifier.notify_one();
    }

    /// Whether this notification is lost (`notify_lost`, drawn from the seed).
    fn notification_lost(&self) -> bool {
        let share = self.settings().notify_lost.clamp(0.0, 1.0);
        share > 0.0 && (self.random() % 1_000_000) < (share * 1_000_000.0) as u64
    }
}

/// Calls the notifications as they fall due, until the simulator is gone.
pub(crate) async fn run_notifier(sim: Weak<Sim>) {
    let http = reqwest::Client::new();
    loop {
        let Some(strong) = sim.upgrade() else { return };
        let (due, next) = strong.due_notifications();
        for url in due {
            if strong.notification_lost() {
                strong.count_call("NOTIFY lost".to_owned());
                continue;
            }
            strong.count_call("NOTIFY sent".to_owned());
            let (http, sim) = (http.clone(), sim.clone());
            tokio::spawn(async move {
                let ok = http.get(&url).send().await.is_ok_and(|r| r.status().is_success());
                if let (false, Some(sim)) = (ok, sim.upgrade()) {
                    sim.count_call("NOTIFY failed".to_owned());
                }
            });
        }
        let wait = next.map(|at| (at - strong.clock.now()).to_std().unwrap_or_default());
        let woken = strong.notifier.clone();
        drop(strong);
        match wait {
            Some(wait) => {
                let _ = tokio::time::timeout(wait, woken.notified()).await;
            }
            None => woken.notified().await,
        }
    }
}

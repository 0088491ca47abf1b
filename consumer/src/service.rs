//! The consumer's loop: up to `jobs_in_flight` job messages at once, each kept invisible while it is worked on,
//! and a shutdown that finishes what it can within the grace period and releases the rest at once.

use crate::worker::{Settled, Worker};
use common::queue::ReceivedMessage;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

/// Receives and works on job messages until `shutdown` resolves; then waits up to the grace period for the jobs
/// in flight, and for those still running aborts their multipart uploads and makes their messages visible again at
/// once (a process killed outright leaves its uploads to the bucket's lifecycle rule).
pub async fn run(worker: Arc<Worker>, shutdown: impl Future<Output = ()>) {
    let settings = worker.settings().clone();
    let slots = Arc::new(Semaphore::new(settings.jobs_in_flight));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let in_flight: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_many_owned(1) => match permit { Ok(p) => p, Err(_) => break },
        };
        let received = tokio::select! {
            () = &mut shutdown => break,
            received = worker.jobs().receive(1, Duration::from_secs(settings.wait_secs)) => received,
        };
        let messages = match received {
            Ok(messages) => messages,
            Err(e) => {
                error!(error = %e, "cannot receive job messages; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        if let Some(message) = messages.into_iter().next() {
            let (worker, in_flight) = (worker.clone(), in_flight.clone());
            let span = info_span!("job_message", message_id = %message.id, receive_count = message.receive_count);
            lock(&in_flight).push(message.receipt.clone());
            tasks.spawn(
                async move {
                    work(&worker, &message).await;
                    lock(&in_flight).retain(|r| r != &message.receipt);
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
    info!(in_flight = tasks.len(), "stopping: no new job messages");
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let finished = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        warn!(jobs = tasks.len(), "grace period over: abandoning the jobs in flight");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // The abandoned jobs' uploads, and any whose abort failed earlier.
    let aborted = worker.uploads().abort_orphans().await;
    if aborted > 0 {
        info!(aborted, "aborted the abandoned multipart uploads");
    }
    let receipts = std::mem::take(&mut *lock(&in_flight));
    for receipt in receipts {
        if let Err(e) = worker.jobs().set_visibility(&receipt, Duration::ZERO).await {
            warn!(error = %e, "could not release a job message; it comes back after its visibility timeout");
        }
    }
    info!("consumer stopped");
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Works on one message, extending its visibility while it runs.
async fn work(worker: &Worker, message: &ReceivedMessage) {
    let visibility = Duration::from_secs(worker.settings().visibility_secs);
    // Extended at once (the queue's own timeout may be shorter than the first beat), then every third of it.
    let heartbeat = async {
        loop {
            if let Err(e) = worker.jobs().set_visibility(&message.receipt, visibility).await {
                warn!(error = %e, "could not extend the job message's visibility");
            }
            worker.protection().keep().await;
            tokio::time::sleep(visibility / 3).await;
        }
    };
    // Scaling in leaves the task alone while it works on a job.
    worker.protection().job_started().await;
    let outcome = tokio::select! {
        outcome = worker.handle(message) => outcome,
        () = heartbeat => unreachable!("the heartbeat never ends"),
    };
    worker.protection().job_ended().await;
    match outcome {
        Ok(Settled::Published { files }) => info!(files, "job done"),
        Ok(Settled::Waiting { delay }) => info!(delay_secs = delay.as_secs(), "job not finished"),
        Ok(Settled::DeadLettered { reason }) => warn!(%reason, "job dead-lettered"),
        Ok(Settled::AskedAgain { reason }) => warn!(%reason, "job failed at Zuora; its window was asked for again"),
        Ok(Settled::AlreadyPublished) => info!(files = 0, "job done (published already)"),
        Ok(Settled::Ignored { reason }) => warn!(%reason, "notification ignored"),
        Err(e) => warn!(error = %e, "job failed for now; its message will be received again"),
    }
}

//! The signal that stops a service.

use crate::exit::Exit;

/// Resolves on SIGTERM (ECS stopping the task) or Ctrl-C. From then on a second one stops the process at once
/// (exit 130), for the person at a terminal who will not wait for the grace period.
pub async fn signal() {
    one_signal().await;
    tokio::spawn(async {
        one_signal().await;
        eprintln!("stopped at once by a second signal; work in flight is picked up again from its queue");
        std::process::exit(Exit::Interrupted.code().into());
    });
}

async fn one_signal() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

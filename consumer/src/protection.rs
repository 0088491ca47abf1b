//! ECS task scale-in protection: while a job is in flight the task asks its ECS agent not to be stopped by a
//! scale-in or a deployment; the protection is renewed while the work goes on and cleared once the task is idle, so
//! scaling in takes idle tasks only. The agent is at `$ECS_AGENT_URI` (set by ECS in every task); without it (outside
//! ECS) protection is off. A failed call is logged and the work goes on: protection is a courtesy of the scheduler,
//! never a reason to drop a job.

use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The environment variable ECS sets to its agent's endpoint.
pub const AGENT_URI_ENV: &str = "ECS_AGENT_URI";

/// How long one protection lasts (ECS allows 1 to 2,880 minutes).
const PROTECTION_MINUTES: u64 = 60;
/// A protection is renewed when less than this is left of it.
const RENEW_WITHIN: Duration = Duration::from_secs(30 * 60);

/// The task's protection, as this process last set it.
pub struct TaskProtection {
    /// The agent's endpoint, and a client for it; none outside ECS.
    agent: Option<Agent>,
    minutes: u64,
    renew_within: Duration,
    /// Held across the call to the agent: calls reach it in the order the jobs started and ended.
    state: tokio::sync::Mutex<State>,
}

struct Agent {
    /// `$ECS_AGENT_URI/task-protection/v1/state`.
    state_url: String,
    http: reqwest::Client,
}

#[derive(Default)]
struct State {
    /// Jobs in flight.
    busy: usize,
    /// Until when the agent was last told to protect the task.
    until: Option<Instant>,
}

impl TaskProtection {
    /// Protection through the agent at `$ECS_AGENT_URI`, or off without it.
    pub fn from_env() -> Self {
        Self::new(std::env::var(AGENT_URI_ENV).ok().filter(|uri| !uri.is_empty()))
    }

    /// Protection through the agent at `agent` (its base URI), or off.
    pub fn new(agent: Option<String>) -> Self {
        Self::with_timing(agent, PROTECTION_MINUTES, RENEW_WITHIN)
    }

    /// With a protection of `minutes`, renewed when less than `renew_within` is left.
    pub fn with_timing(agent: Option<String>, minutes: u64, renew_within: Duration) -> Self {
        let agent = agent.map(|uri| Agent {
            state_url: format!("{}/task-protection/v1/state", uri.trim_end_matches('/')),
            http: reqwest::Client::new(),
        });
        Self { agent, minutes, renew_within, state: Default::default() }
    }

    /// A job starts: the task is protected if it was not (or not for long enough).
    pub async fn job_started(&self) {
        let mut state = self.state.lock().await;
        state.busy += 1;
        self.protect_if_due(&mut state).await;
    }

    /// While a job goes on (its heartbeat): the protection is renewed before it lapses.
    pub async fn keep(&self) {
        let mut state = self.state.lock().await;
        if state.busy > 0 {
            self.protect_if_due(&mut state).await;
        }
    }

    /// A job ended: the protection is cleared when none is left.
    pub async fn job_ended(&self) {
        let mut state = self.state.lock().await;
        state.busy = state.busy.saturating_sub(1);
        if state.busy == 0 && state.until.is_some() && self.tell(false).await {
            state.until = None;
        }
    }

    async fn protect_if_due(&self, state: &mut State) {
        let now = Instant::now();
        let due = state.until.is_none_or(|until| until.saturating_duration_since(now) < self.renew_within);
        // A failed call leaves the protection due: the next heartbeat tries again.
        if due && self.tell(true).await {
            state.until = Some(now + Duration::from_secs(self.minutes * 60));
        }
    }

    /// Sets the protection at the agent; true when it took.
    async fn tell(&self, protected: bool) -> bool {
        let Some(agent) = &self.agent else { return false };
        let body = if protected {
            serde_json::json!({"ProtectionEnabled": true, "ExpiresInMinutes": self.minutes})
        } else {
            serde_json::json!({"ProtectionEnabled": false})
        };
        let answer = agent.http.put(&agent.state_url).json(&body).timeout(Duration::from_secs(5)).send().await;
        let failure = match answer {
            Ok(response) if response.status().is_success() => {
                // The agent answers 200 with a `failure` object when ECS refused.
                let answer: serde_json::Value = response.json().await.unwrap_or_default();
                answer.get("failure").map(|failure| failure.to_string())
            }
            Ok(response) => Some(format!("HTTP {}", response.status())),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => {
                info!(protected, "task scale-in protection set");
                true
            }
            Some(failure) => {
                warn!(%failure, protected, "could not set the task's scale-in protection; trying again at the next heartbeat");
                false
            }
        }
    }
}

//! Fault injection: rules matched against requests, and batches made to abort.

use super::*;

impl Sim {
    /// Replaces the fault rules.
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        *lock(&self.faults) = rules.into_iter().map(|rule| ActiveFault { remaining: rule.times, rule }).collect();
    }

    /// The rules that apply to this request (spending `times`).
    pub fn faults_for(&self, endpoint: &str) -> Vec<FaultRule> {
        let mut faults = lock(&self.faults);
        let mut hits = Vec::new();
        for fault in faults.iter_mut() {
            if fault.rule.endpoint != endpoint && fault.rule.endpoint != "any" {
                continue;
            }
            if fault.remaining == Some(0) {
                continue;
            }
            if let Some(rate) = fault.rule.rate
                && (self.random() % 1_000_000) as f64 / 1_000_000.0 >= rate
            {
                continue;
            }
            if let Some(n) = fault.remaining.as_mut() {
                *n -= 1;
            }
            hits.push(fault.rule.clone());
        }
        faults.retain(|f| f.remaining != Some(0));
        hits
    }

    /// Makes the next batch on `object` abort with `message`.
    pub fn abort_next_batch(&self, object: &str, message: &str) {
        lock(&self.abort_next).insert(object.to_ascii_lowercase(), message.to_owned());
    }
}

//! OAuth tokens: issued for the configured client, valid until they expire on the simulated clock.

use super::*;

impl Sim {
    /// Issues a token for valid credentials.
    pub fn issue_token(&self, client_id: &str, client_secret: &str) -> Option<(String, u64)> {
        if client_id != self.config.client_id || client_secret != self.config.client_secret {
            return None;
        }
        let token = self.new_id();
        let lifetime = self.config.token_lifetime_secs;
        lock(&self.tokens).insert(token.clone(), self.clock.now() + Duration::seconds(lifetime as i64));
        Some((token, lifetime))
    }

    /// Whether a bearer token is known and not expired.
    pub fn token_valid(&self, token: &str) -> bool {
        lock(&self.tokens).get(token).is_some_and(|expiry| self.clock.now() < *expiry)
    }
}

//! The OAuth token cache: one token shared by every call, refreshed before it expires and once after a 401.

use crate::secret::Secret;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A token and the moment to stop using it.
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// Holds the current token. The lock is held while a new one is fetched, so a burst of calls after expiry makes one
/// token request, not one each (the token endpoint allows only 100 requests a minute per IP).
#[derive(Default)]
pub(crate) struct TokenCache {
    current: Mutex<Option<Cached>>,
}

impl TokenCache {
    /// The cached token if still fresh, else the one `fetch` returns (with its lifetime), cached.
    pub(crate) async fn get_or_refresh<F, Fut, E>(&self, margin: Duration, fetch: F) -> Result<Secret, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Secret, Duration), E>>,
    {
        let mut current = self.current.lock().await;
        if let Some(cached) = current.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (token, lifetime) = fetch().await?;
        // Refresh `margin` early, but never later than half-way through a short-lived token.
        let early = margin.min(lifetime / 2);
        *current = Some(Cached { token: token.clone(), refresh_at: Instant::now() + lifetime - early });
        Ok(token)
    }

    /// Forgets `rejected` (after a 401), unless another caller already replaced it.
    pub(crate) async fn invalidate(&self, rejected: &Secret) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|cached| &cached.token == rejected) {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn fetch_counting(calls: &AtomicU32, lifetime: Duration) -> Result<(Secret, Duration), ()> {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        Ok((Secret::new(format!("token-{n}")), lifetime))
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_before_expiry_and_after_invalidation() {
        let cache = TokenCache::default();
        let calls = AtomicU32::new(0);
        let margin = Duration::from_secs(300);
        let hour = Duration::from_secs(3600);
        let first = cache.get_or_refresh(margin, || fetch_counting(&calls, hour)).await.unwrap();
        let again = cache.get_or_refresh(margin, || fetch_counting(&calls, hour)).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // 5 minutes before expiry it is replaced.
        tokio::time::advance(Duration::from_secs(3301)).await;
        let second = cache.get_or_refresh(margin, || fetch_counting(&calls, hour)).await.unwrap();
        assert_ne!(first, second);

        // A 401 on an old token does not throw away the new one; on the current one it does.
        cache.invalidate(&first).await;
        assert_eq!(cache.get_or_refresh(margin, || fetch_counting(&calls, hour)).await.unwrap(), second);
        cache.invalidate(&second).await;
        let third = cache.get_or_refresh(margin, || fetch_counting(&calls, hour)).await.unwrap();
        assert_eq!(third.expose(), "token-2");
    }

    #[tokio::test(start_paused = true)]
    async fn short_lived_tokens_refresh_half_way() {
        let cache = TokenCache::default();
        let calls = AtomicU32::new(0);
        let margin = Duration::from_secs(300);
        cache.get_or_refresh(margin, || fetch_counting(&calls, Duration::from_secs(10))).await.unwrap();
        tokio::time::advance(Duration::from_secs(4)).await;
        cache.get_or_refresh(margin, || fetch_counting(&calls, Duration::from_secs(10))).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.get_or_refresh(margin, || fetch_counting(&calls, Duration::from_secs(10))).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

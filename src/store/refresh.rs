//! A credential kept until shortly before it expires, then fetched again.
//!
//! object_store's own token cache is private to the crate, so the credential providers we
//! add (STS, `credential_process`, gcloud's authorized user) share this one. One lock is
//! held across a fetch: many requests that find the credential stale wait for one refresh
//! instead of each starting their own.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

/// A credential this close to its expiry is fetched again before use, so that no request
/// is signed with one that expires on the way (the AWS SDKs refresh 5 to 15 minutes early).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The last credential fetched and when it expires (`None`: never).
pub struct Refreshing<T> {
    slot: Mutex<Option<(Arc<T>, Option<SystemTime>)>>,
}

impl<T> Default for Refreshing<T> {
    fn default() -> Self {
        Refreshing {
            slot: Mutex::new(None),
        }
    }
}

impl<T> std::fmt::Debug for Refreshing<T> {
    // Never the credential itself: Debug output may end up in a message or a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refreshing(..)")
    }
}

/// Whether a credential expiring at `expiry` is still good to use at `now`.
pub fn fresh(expiry: Option<SystemTime>, now: SystemTime) -> bool {
    expiry.is_none_or(|e| {
        e.duration_since(now)
            .is_ok_and(|left| left > REFRESH_BEFORE)
    })
}

impl<T> Refreshing<T> {
    /// The cached credential while it is fresh, else the one `fetch` returns (cached in
    /// turn). A failed fetch is not cached: the next request tries again.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Option<SystemTime>), E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((credential, expiry)) = slot.as_ref() {
            if fresh(*expiry, SystemTime::now()) {
                return Ok(Arc::clone(credential));
            }
        }
        let (credential, expiry) = fetch().await?;
        let credential = Arc::new(credential);
        *slot = Some((Arc::clone(&credential), expiry));
        Ok(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(fresh(None, now));
        assert!(fresh(Some(now + Duration::from_secs(3600)), now));
        assert!(!fresh(Some(now + Duration::from_secs(60)), now));
        assert!(!fresh(Some(now - Duration::from_secs(60)), now));
    }

    #[test]
    fn refetches_only_when_stale() {
        let rt = tokio::runtime::Builder::new_current_thread().build();
        let Ok(rt) = rt else { return };
        let cache: Refreshing<u32> = Refreshing::default();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let fetch = |ttl: u64| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, ()>((n, Some(SystemTime::now() + Duration::from_secs(ttl)))) }
        };
        rt.block_on(async {
            assert_eq!(cache.get(|| fetch(3600)).await, Ok(Arc::new(0)));
            assert_eq!(cache.get(|| fetch(3600)).await, Ok(Arc::new(0)));
        });
        let stale: Refreshing<u32> = Refreshing::default();
        rt.block_on(async {
            assert_eq!(stale.get(|| fetch(10)).await, Ok(Arc::new(1)));
            assert_eq!(stale.get(|| fetch(10)).await, Ok(Arc::new(2)));
        });
    }
}

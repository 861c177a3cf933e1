//! What the manager hands to server functions: a narrow interface instead of its whole state, so
//! this crate does not depend on the manager's crate.

use shared::status::SystemOverview;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A future resolving to the system overview, or to a message safe to show to the user.
pub type OverviewFuture = Pin<Box<dyn Future<Output = Result<SystemOverview, String>> + Send>>;

/// Server-side services the UI's server functions may call; provided as Leptos context.
#[derive(Clone)]
pub struct ServerContext {
    overview: Arc<dyn Fn() -> OverviewFuture + Send + Sync>,
}

impl ServerContext {
    /// Wraps the manager's overview source.
    pub fn new(overview: impl Fn() -> OverviewFuture + Send + Sync + 'static) -> Self {
        Self {
            overview: Arc::new(overview),
        }
    }

    /// Reads the current overview.
    pub async fn overview(&self) -> Result<SystemOverview, String> {
        (self.overview)().await
    }
}

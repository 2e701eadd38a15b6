//! The console's policy pages.

use crate::AppState;
use axum::Router;

/// The policy pages' routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}

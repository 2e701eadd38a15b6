//! The audit log pages, nested at `/console/audit` (admins only: the
//! console's router checks the role before any of these routes; each
//! handler still takes [`super::Signed`] and may re-check). A stub with a
//! placeholder list page, replaced by the audit pages.

use super::{page, ConsoleError, Signed};
use crate::auth::Role;
use crate::AppState;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

/// The audit pages' routes, relative to `/console/audit` (`/` is the list).
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/", get(list))
}

async fn list(signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(Role::Admin)?;
    Ok(page(
        Some(&signed),
        "Audit log",
        html! { p { "The audit log pages are not built yet." } },
    )
    .into_response())
}

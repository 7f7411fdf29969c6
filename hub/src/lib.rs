//! `jianka-hub`: the hub of every tier above the township — county, prefecture, province — chosen
//! by its config's region (6, 4 or 2 digits).
//!
//! Code map (ARCHITECTURE.md has it whole): [`config`] (hub.toml), [`store`] (the storage
//! boundary: rusqlite and PostgreSQL backends), [`ingest`] (one change set, step by step),
//! [`merge`] and [`authority`] (pure), [`record`] and [`stored_fields`] (a stored row and the text
//! of its fields), [`allocation`] (signed allocations and the ceilings in
//! force), [`quota`] (the ledger), [`years`] (annual cycle), [`admin`] (officer commands),
//! [`forward`] (up one tier), [`upstream`] (the parent's feedback, passed down), [`parent`] (the
//! client and pace of the link up), [`jobs`] (background work), [`audit`] (hash-chained log),
//! [`http`] (routes).

pub mod admin;
pub mod allocation;
pub mod audit;
pub mod auth;
pub mod authority;
pub mod bundle;
pub mod clock;
pub mod config;
pub mod error;
pub mod feedback;
pub mod forward;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod merge;
pub mod parent;
pub mod queries;
pub mod quota;
pub mod record;
pub mod state;
pub mod store;
pub mod stored_fields;
pub mod upstream;
pub mod years;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::HubConfig;
pub use state::Hub;

use std::future::Future;
use std::sync::Arc;

/// Serves the hub on `listener` until `shutdown` resolves, with the clock from `JIANKA_NOW` or the
/// system clock. Also runs the cron jobs (forwarding, New Year, locking).
pub async fn run(
    listener: tokio::net::TcpListener,
    config: HubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_clock(listener, config, clock::from_env()?, shutdown).await
}

/// [`run`] with a given clock (tests pass a [`ManualClock`]).
pub async fn run_with_clock(
    listener: tokio::net::TcpListener,
    config: HubConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let hub = Arc::new(Hub::open(config, clock).await?);
    serve(listener, hub, shutdown).await
}

/// Serves an already opened hub (tests keep a handle to call admin functions directly).
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let jobs = jobs::spawn(hub.clone(), stop_rx);
    tracing::info!(region = %hub.region(), addr = ?listener.local_addr().ok(), "hub serving");
    let app = http::router(hub);
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(jobs::EXIT_DEADLINE + std::time::Duration::from_secs(1), jobs).await;
    result.map_err(Into::into)
}

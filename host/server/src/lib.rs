//! Observability over HTTP: Prometheus `/metrics`, the `/status` page (HTML, or JSON at
//! `/status.json`) and `/healthz`.
//!
//! The engine records every cycle into its [`Board`]; the server only reads it, so a slow
//! scrape never touches the reconcile loop.
//!
//! **Must not** act: it has no handle on the engine's ports, only on the board.

#![warn(missing_docs)]

pub mod charts;
pub mod page;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

pub use ecsp_engine::board::Board;
use prometheus_client::registry::Registry;

/// The Prometheus text exposition: the board's metrics, with the policy runtime's
/// dropped-log counts folded in, and the standard `process_*` metrics.
pub fn metrics_text(board: &Board) -> String {
    let drops = ecsp_policy::log::dropped_lines()
        .into_iter()
        .map(|(policy, total)| (ecsp_policy::bounds::text_within(&policy, 128), total));
    board.record_policy_log_drops(drops);
    let mut out = String::new();
    board.encode_metrics(&mut out);
    // Unprefixed, as every Prometheus client names them.
    let mut process = Registry::default();
    process.register_collector(Box::new(process::ProcessCollector));
    prometheus_client::encoding::text::encode_registry(&mut out, &process).expect("writing to a String cannot fail");
    prometheus_client::encoding::text::encode_eof(&mut out).expect("writing to a String cannot fail");
    out
}

/// The console page (see [`page`]).
pub fn status_html(board: &Board) -> String {
    page::render(&board.console())
}

/// The axum router over a board.
pub fn router(board: Arc<Board>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(|State(b): State<Arc<Board>>| async move {
            ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics_text(&b))
        }))
        .route("/status", get(|State(b): State<Arc<Board>>| async move { Html(status_html(&b)) }))
        .route("/status.json", get(|State(b): State<Arc<Board>>| async move { axum::Json(b.status_json()) }))
        .route("/healthz", get(|State(b): State<Arc<Board>>| async move {
            let h = b.health(ecsp_engine::now_ms());
            let code = if h.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (code, format!("{}: {}\n", if h.ok { "ok" } else { "stuck" }, h.reason)).into_response()
        }))
        .with_state(board)
}

/// Serves the board on `listen` until the future is dropped.
pub async fn serve(listen: SocketAddr, board: Arc<Board>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (the `listen` setting): {e}"))?;
    axum::serve(listener, router(board)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_hold_the_board_and_the_process_with_one_eof() {
        let board = Board::new();
        board.record(&ecsp_engine::CycleReport::default());
        let text = metrics_text(&board);
        assert!(text.contains("ecs_provisioner_cycles_total 1"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("process_resident_memory_bytes ")), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
    }
}

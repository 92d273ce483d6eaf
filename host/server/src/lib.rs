//! Observability over HTTP: Prometheus `/metrics`, the `/status` page (HTML, or JSON at
//! `/status.json`) and `/healthz`.
//!
//! The engine records every cycle into its [`Board`]; the server only reads it, so a slow
//! scrape never touches the reconcile loop.
//!
//! **Must not** act: it has no handle on the engine's ports, only on the board.

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

pub use ecsp_engine::board::Board;
use ecsp_engine::model::NodeState;

/// The Prometheus text exposition, with the policy runtime's dropped-log counts folded in.
pub fn metrics_text(board: &Board) -> String {
    let drops = ecsp_policy::log::dropped_lines()
        .into_iter()
        .map(|(policy, total)| (ecsp_policy::bounds::text_within(&policy, 128), total));
    board.record_policy_log_drops(drops);
    board.metrics_text()
}

/// The status as a small HTML page.
pub fn status_html(board: &Board) -> String {
    let status = board.status_json();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>ecs-provisioner</title>\
         <meta http-equiv=refresh content=5><style>body{font:14px sans-serif;margin:2em}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}</style></head><body>\
         <h1>ecs-provisioner</h1>",
    );
    let health = &status["health"];
    html.push_str(&format!(
        "<p>Health: <b>{}</b>: {}</p>",
        if health["ok"].as_bool() == Some(true) { "ok" } else { "STUCK" },
        escape(health["reason"].as_str().unwrap_or(""))
    ));
    let replica = &status["replica"];
    if !replica.is_null() {
        let since = replica["leader_since_ms"].as_u64().map(|ms| format!(" since {ms} ms after the epoch")).unwrap_or_default();
        html.push_str(&format!(
            "<p>Replica <b>{}</b>: {}. Leader: <b>{}</b>{since}</p>",
            escape(replica["replica"].as_str().unwrap_or("")),
            escape(replica["role"].as_str().unwrap_or("")),
            escape(replica["leader"].as_str().unwrap_or("unknown")),
        ));
    }
    let latest = &status["latest"];
    if latest.is_null() {
        html.push_str("<p>No cycle has run yet.</p>");
    } else {
        html.push_str(&format!("<p>Cycle {} decided by {}</p>", latest["cycle"], escape(&latest["decided_by"].to_string())));
        html.push_str("<h2>Fleet</h2><table><tr><th>template</th>");
        for s in NodeState::ALL {
            html.push_str(&format!("<th>{}</th>", s.as_str()));
        }
        html.push_str("<th>queued</th></tr>");
        let empty = serde_json::Map::new();
        let nodes = latest["nodes"].as_object().unwrap_or(&empty);
        let queued = latest["queued"].as_object().unwrap_or(&empty);
        let mut templates: Vec<&String> = nodes.keys().chain(queued.keys()).collect();
        templates.sort();
        templates.dedup();
        for t in templates {
            html.push_str(&format!("<tr><td>{}</td>", escape(t)));
            for s in NodeState::ALL {
                html.push_str(&format!("<td>{}</td>", nodes.get(t).and_then(|m| m.get(s.as_str())).and_then(|v| v.as_u64()).unwrap_or(0)));
            }
            html.push_str(&format!("<td>{}</td></tr>", queued.get(t).and_then(|v| v.as_u64()).unwrap_or(0)));
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>Recent plans</h2><ul>");
    for p in status["recent_plans"].as_array().into_iter().flatten() {
        html.push_str(&format!("<li><code>{}</code></li>", escape(&p.to_string())));
    }
    html.push_str("</ul><h2>Recent errors</h2><ul>");
    for e in status["recent_errors"].as_array().into_iter().flatten() {
        html.push_str(&format!("<li>{}</li>", escape(e["error"].as_str().unwrap_or(""))));
    }
    html.push_str("</ul><p><a href=/status.json>JSON</a> · <a href=/metrics>metrics</a></p></body></html>");
    html
}

fn escape(s: &str) -> String {
s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
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
    use ecsp_engine::CycleReport;

    #[test]
    fn the_status_page_escapes_what_it_shows() {
        let board = Board::new();
        let mut r = CycleReport { cycle: 7, ..Default::default() };
        r.nodes.entry("linux".into()).or_default().insert("online".into(), 3);
        r.errors.push("boom <b>".into());
        board.record(&r);
        let html = status_html(&board);
        assert!(html.contains("boom &lt;b&gt;"), "errors are escaped");
        assert!(html.contains("<td>linux</td>"));
    }
}

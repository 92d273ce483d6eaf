//! The decision journal of `run` (`[journal]`, docs/journal.md): opened at start, handed every
//! cycle's report by the engine, written on a thread of its own.

use std::sync::Arc;

use anyhow::Context;
use ecsp_journal::{Journal, JournalSink};

use super::LiveEngine;
use crate::config::Config;

/// Opens the journal `config` asks for; `None` when `[journal] enabled = false`.
pub fn start(config: &Config) -> anyhow::Result<Option<Arc<JournalSink>>> {
    if !config.journal.enabled {
        return Ok(None);
    }
    let templates = config.templates.iter().map(|t| (t.name().to_owned(), t.labels.join("&&"))).collect();
    let journal = Journal::open(&config.journal, &config.controller_id, templates)
        .context("opening the decision journal ([journal] dir; `enabled = false` turns it off)")?;
    tracing::info!(dir = %journal.dir().display(), "recording every cycle in the decision journal");
    Ok(Some(Arc::new(JournalSink::start(journal).context("starting the journal writer")?)))
}

/// Has `engine` hand every cycle's report to `sink`.
pub fn attach(engine: &LiveEngine, sink: &Option<Arc<JournalSink>>) {
    if let Some(sink) = sink.clone() {
        engine.on_cycle(Arc::new(move |report| sink.record(report)));
    }
}

//! Anchor nodes: one never-launched, temporarily-offline node per template carrying its labels.
//!
//! With no agent node at all, Jenkins never names a queued item's label in `why`; and a label no
//! node carries gets "There are no nodes with the label" only once some node exists. An anchor
//! per template keeps the label-bearing messages coming from a fleet of zero, and its name in
//! "‘`<template>-anchor`’ is offline" maps straight back to its template.

use std::collections::BTreeSet;

use serde::Serialize;

use super::client::{InboundAgentSpec, JenkinsClient, NodeMode};
use super::demand::{TemplateLabels, anchor_name};
use super::error::JenkinsError;
use super::model::Computer;

/// Marker in an anchor's description (also tells a Jenkins admin what the node is for).
pub const ANCHOR_MARKER: &str = "ecs-provisioner anchor";

/// Reason shown on the anchor's offline mark.
pub const ANCHOR_OFFLINE_REASON: &str =
    "ecs-provisioner anchor node: never launched, keeps queue labels visible";

/// The node an anchor is created as.
pub fn anchor_spec(t: &TemplateLabels) -> InboundAgentSpec {
    InboundAgentSpec {
        name: anchor_name(&t.name),
        description: format!(
            "{ANCHOR_MARKER} for template {}: never launched and always offline; it exists so that \
             Jenkins names the labels queued builds wait for. Do not delete while the provisioner runs.",
            t.name
        ),
        num_executors: 1,
        remote_fs: "/nonexistent".into(),
        labels: t.labels.clone(),
        // Exclusive so that, should anyone ever connect it, it takes no unlabelled builds.
        mode: NodeMode::Exclusive,
    }
}

/// What [`ensure_anchors`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AnchorReport {
    /// Anchors that were missing and were created.
    pub created: Vec<String>,
    /// Anchors whose labels were wrong and were re-created.
    pub recreated: Vec<String>,
    /// Anchors that had lost their offline mark and got it back.
    pub re_offlined: Vec<String>,
    /// Anchors that were fine.
    pub ok: Vec<String>,
}

/// True if the computer's labels (minus its own name) are exactly the template's labels.
fn labels_match(c: &Computer, t: &TemplateLabels) -> bool {
    let have: BTreeSet<&str> = c.labels().filter(|l| *l != c.display_name).collect();
    let want: BTreeSet<&str> = t.labels.iter().map(String::as_str).collect();
    have == want
}

/// Creates or repairs the anchor of every template, idempotently. `computers` is a recent
/// listing (it saves one call per anchor); anything it got wrong is corrected by Jenkins'
/// answers (an "already exists" is treated as present).
pub async fn ensure_anchors(
    client: &JenkinsClient,
    templates: &[TemplateLabels],
    computers: &[Computer],
) -> Result<AnchorReport, JenkinsError> {
    let mut report = AnchorReport::default();
    for t in templates {
        let spec = anchor_spec(t);
        let existing = computers.iter().find(|c| c.display_name == spec.name);
        match existing {
            None => {
                match client.create_inbound_agent(&spec).await {
                    Ok(()) | Err(JenkinsError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
                client
                    .take_offline(&spec.name, ANCHOR_OFFLINE_REASON)
                    .await?;
                report.created.push(spec.name);
            }
            Some(c) if !labels_match(c, t) => {
                // Changing labels needs config.xml; re-creating is simpler and equally safe,
                // since an anchor never runs anything.
                client.delete_node(&spec.name).await?;
                client.create_inbound_agent(&spec).await?;
                client
                    .take_offline(&spec.name, ANCHOR_OFFLINE_REASON)
                    .await?;
                report.recreated.push(spec.name);
            }
            Some(c) if !c.temporarily_offline => {
                client
                    .take_offline(&spec.name, ANCHOR_OFFLINE_REASON)
                    .await?;
                report.re_offlined.push(spec.name);
            }
            Some(_) => report.ok.push(spec.name),
        }
    }
    Ok(report)
}

/// True for computers that are anchors (by name pattern and description marker).
pub fn is_anchor(c: &Computer) -> bool {
    c.display_name.ends_with("-anchor")
        && c.description
            .as_deref()
            .is_some_and(|d| d.contains(ANCHOR_MARKER))
}

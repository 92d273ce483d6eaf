//! Demand: which template each buildable queue item needs.
//!
//! The label comes from the freestyle task's `labelExpression` when the task exports one, else
//! from the `why` text ([`super::why`]). Each labelled item goes to the first template, in
//! config order, whose labels satisfy the expression; an unlabelled item goes to the first
//! template in `NORMAL` mode (Jenkins runs unlabelled builds only on such nodes).

use std::collections::HashSet;

use serde::Serialize;

use super::client::NodeMode;
use super::label::LabelExpr;
use super::model::{Computer, QueueItem};
use super::why::{Why, parse_why};

/// The labels a template's nodes carry, in the order templates appear in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateLabels {
    /// Template name; nodes are named `<template>-<instance-id>`.
    pub name: String,
    /// Labels every node of the template carries.
    pub labels: Vec<String>,
    /// `Normal` nodes also take builds without a label.
    pub mode: NodeMode,
}

/// One queued build a template should serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuedItem {
    /// Jenkins queue item id.
    pub id: u64,
    /// How long it has been in the queue.
    pub wait_ms: u64,
    /// The label expression it asks for (Jenkins' rendering), or `None` for "any node".
    pub label: Option<String>,
    /// The task name (job or Pipeline step), for logs.
    pub task: String,
}

/// Queued builds of one template, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TemplateDemand {
    /// Template name.
    pub template: String,
    /// The queued builds for it, oldest first; empty when nothing waits.
    pub items: Vec<QueuedItem>,
}

/// The whole demand of one queue snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Demand {
    /// One entry per template, in config order (empty `items` when nothing waits for it).
    pub per_template: Vec<TemplateDemand>,
    /// Buildable items no template can serve, or whose label cannot be known.
    pub unmatched: u32,
    /// Those items, oldest first, for messages (`plan`).
    pub unmatched_items: Vec<UnmatchedItem>,
}

/// A queued build no template can serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnmatchedItem {
    /// Jenkins queue item id.
    pub id: u64,
    /// How long it has been in the queue.
    pub wait_ms: u64,
    /// The task name (job or Pipeline step).
    pub task: String,
    /// What it waits for, as far as the queue tells: `label linux&&arm64`, `node x`, ...
    pub needs: String,
}

impl Demand {
    /// Items waiting for `template`, or 0 for an unknown name.
    pub fn count(&self, template: &str) -> usize {
        self.per_template
            .iter()
            .find(|t| t.template == template)
            .map_or(0, |t| t.items.len())
    }
}

/// What an item needs, as far as the queue tells.
#[derive(Clone, Debug, PartialEq)]
enum Need {
    Label(LabelExpr),
    AnyNode,
    /// Jenkins named the one node that can run it.
    Node(String),
    Unknown,
}

impl Need {
    /// What the item waits for, in words.
    fn describe(&self) -> String {
        match self {
            Need::Label(e) => format!("label {}", e.name()),
            Need::AnyNode => "any node (no template takes unlabelled builds: all are `exclusive`)".into(),
            Need::Node(n) => format!("node {n}"),
            Need::Unknown => "a label the queue does not tell (Jenkins names none while no agent exists)".into(),
        }
    }
}

/// Name of the anchor node of a template.
pub fn anchor_name(template: &str) -> String {
    format!("{template}-anchor")
}

/// The template a node belongs to: its anchor, or a node named `<template>-i-...` (an ECS
/// instance id). The longest matching template name wins.
pub fn template_of_node<'a>(
    templates: &'a [TemplateLabels],
    node: &str,
) -> Option<&'a TemplateLabels> {
    templates
        .iter()
        .filter(|t| {
            node.strip_prefix(t.name.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|rest| rest == "anchor" || rest.starts_with("i-"))
        })
        .max_by_key(|t| t.name.len())
}

/// The first template (config order) whose labels satisfy `need`.
fn first_match<'a>(templates: &'a [TemplateLabels], need: &Need) -> Option<&'a TemplateLabels> {
    match need {
        Need::Label(e) => templates.iter().find(|t| e.matches(&t.labels)),
        Need::AnyNode => templates.iter().find(|t| t.mode == NodeMode::Normal),
        Need::Node(n) => template_of_node(templates, n),
        Need::Unknown => None,
    }
}

fn need_of(item: &QueueItem, node_names: &HashSet<&str>, agents_exist: bool) -> Need {
    // Freestyle and other AbstractProject tasks export their label directly.
    if let Some(expr) = &item.task.label_expression {
        return match expr.as_deref().map(str::trim) {
            Some(e) if !e.is_empty() => Need::Label(LabelExpr::parse_lenient(e)),
            _ => Need::AnyNode,
        };
    }
    match parse_why(item.why.as_deref().unwrap_or("")) {
        Why::Label(l) => Need::Label(LabelExpr::parse_lenient(&l)),
        Why::NodeOffline(n) => Need::Node(n),
        // The text names the node when exactly one node has the label, else the label.
        Why::WaitingOn(x) if node_names.contains(x.as_str()) => Need::Node(x),
        Why::WaitingOn(x) => Need::Label(LabelExpr::parse_lenient(&x)),
        // With no agent node at all Jenkins drops the label from the message: unknowable.
        Why::WaitingForAnyExecutor if agents_exist => Need::AnyNode,
        Why::Unlabeled => Need::AnyNode,
        Why::WaitingForAnyExecutor | Why::Other => Need::Unknown,
    }
}

/// Computes per-template demand from a queue listing and the computer listing it was read
/// with. `now_ms` is epoch milliseconds (Jenkins' clock and ours are assumed close).
pub fn compute_demand(
    queue: &[QueueItem],
    computers: &[Computer],
    templates: &[TemplateLabels],
    now_ms: u64,
) -> Demand {
    let agents: Vec<&Computer> = computers.iter().filter(|c| !c.is_built_in()).collect();
    let node_names: HashSet<&str> = agents.iter().map(|c| c.display_name.as_str()).collect();
    let mut per_template: Vec<TemplateDemand> = templates
        .iter()
        .map(|t| TemplateDemand {
            template: t.name.clone(),
            items: Vec::new(),
        })
        .collect();
    let mut unmatched_items = Vec::new();
    for item in queue.iter().filter(|i| i.waits_for_executor()) {
        let need = need_of(item, &node_names, !agents.is_empty());
        let Some(t) = first_match(templates, &need) else {
            unmatched_items.push(UnmatchedItem {
                id: item.id,
                wait_ms: now_ms.saturating_sub(item.in_queue_since),
                task: item.task.name.clone(),
                needs: need.describe(),
            });
            continue;
        };
        let label = match &need {
            Need::Label(e) => Some(e.name()),
            Need::Node(n) => Some(n.clone()),
            _ => None,
        };
        let slot = per_template
            .iter_mut()
            .find(|d| d.template == t.name)
            .expect("one entry per template");
        slot.items.push(QueuedItem {
            id: item.id,
            wait_ms: now_ms.saturating_sub(item.in_queue_since),
            label,
            task: item.task.name.clone(),
        });
    }
    for d in &mut per_template {
        d.items
            .sort_by(|a, b| b.wait_ms.cmp(&a.wait_ms).then(a.id.cmp(&b.id)));
    }
    unmatched_items.sort_by(|a, b| b.wait_ms.cmp(&a.wait_ms).then(a.id.cmp(&b.id)));
    Demand {
        per_template,
        unmatched: unmatched_items.len() as u32,
        unmatched_items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LabelName, Task};

    fn templates() -> Vec<TemplateLabels> {
        vec![
            TemplateLabels {
                name: "linux".into(),
                labels: vec!["linux".into(), "docker".into()],
                mode: NodeMode::Exclusive,
            },
            TemplateLabels {
                name: "big".into(),
                labels: vec!["linux".into(), "docker".into(), "large".into()],
                mode: NodeMode::Normal,
            },
            TemplateLabels {
                name: "win".into(),
                labels: vec!["windows".into()],
                mode: NodeMode::Exclusive,
            },
        ]
    }

    fn freestyle(id: u64, since: u64, label: Option<&str>) -> QueueItem {
        QueueItem {
            id,
            buildable: true,
            in_queue_since: since,
            why: Some("Waiting for next available executor".into()),
            task: Task {
                class: "hudson.model.FreeStyleProject".into(),
                name: format!("job{id}"),
                url: None,
                label_expression: Some(label.map(str::to_string)),
            },
            ..Default::default()
        }
    }

    fn pipeline(id: u64, since: u64, why: &str) -> QueueItem {
        QueueItem {
            id,
            buildable: true,
            in_queue_since: since,
            why: Some(why.into()),
            task: Task { class: "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask".into(), name: format!("part of p #{id}"), url: None, label_expression: None },
            ..Default::default()
        }
    }

    fn node(name: &str, labels: &[&str]) -> Computer {
        Computer {
            class: "hudson.slaves.SlaveComputer".into(),
            display_name: name.into(),
            assigned_labels: labels
                .iter()
                .map(|l| LabelName {
                    name: l.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn anchors() -> Vec<Computer> {
        vec![
            node("linux-anchor", &["linux", "docker"]),
            node("big-anchor", &["linux", "docker", "large"]),
            node("win-anchor", &["windows"]),
        ]
    }

    fn ids(d: &Demand, t: &str) -> Vec<u64> {
        d.per_template
            .iter()
            .find(|x| x.template == t)
            .unwrap()
            .items
            .iter()
            .map(|i| i.id)
            .collect()
    }

    #[test]
    fn freestyle_items_use_label_expression_first_match() {
        let q = vec![
            freestyle(1, 1_000, Some("linux && docker")),
            freestyle(2, 500, Some("large")),
            freestyle(3, 2_000, Some("windows || mac")),
            freestyle(4, 100, None),
            freestyle(5, 100, Some("gpu")),
        ];
        let d = compute_demand(&q, &anchors(), &templates(), 10_000);
        assert_eq!(ids(&d, "linux"), vec![1]);
        // Oldest first: item 4 (since 100) before item 2 (since 500).
        assert_eq!(ids(&d, "big"), vec![4, 2]);
        assert_eq!(ids(&d, "win"), vec![3]);
        assert_eq!(d.unmatched, 1);
        assert_eq!((d.unmatched_items[0].id, d.unmatched_items[0].needs.as_str()), (5, "label gpu"));
        assert_eq!(d.per_template[1].items[0].wait_ms, 9_900);
        assert_eq!(
            d.per_template[0].items[0].label.as_deref(),
            Some("linux&&docker")
        );
    }

    #[test]
    fn pipeline_items_use_why_texts() {
        let q = vec![
            pipeline(1, 0, "There are no nodes with the label ‘linux&&large’"),
            pipeline(2, 0, "All nodes of label ‘linux&&docker’ are offline"),
            pipeline(3, 0, "Waiting for next available executor on ‘windows’"),
            pipeline(4, 0, "‘win-anchor’ is offline"),
            pipeline(5, 0, "Waiting for next available executor"),
            pipeline(6, 0, "Jenkins is about to shut down"),
        ];
        let d = compute_demand(&q, &anchors(), &templates(), 1);
        assert_eq!(ids(&d, "linux"), vec![2]);
        assert_eq!(ids(&d, "big"), vec![1, 5]);
        assert_eq!(ids(&d, "win"), vec![3, 4]);
        assert_eq!(d.unmatched, 1);
    }

    #[test]
    fn single_node_messages_map_to_the_nodes_template() {
        let computers = vec![node("linux-i-abc", &["linux", "docker", "linux-i-abc"])];
        let q = vec![
            pipeline(1, 0, "Waiting for next available executor on ‘linux-i-abc’"),
            pipeline(2, 0, "‘linux-i-abc’ is offline"),
            pipeline(3, 0, "‘someone-elses’ is offline"),
        ];
        let d = compute_demand(&q, &computers, &templates(), 1);
        assert_eq!(ids(&d, "linux"), vec![1, 2]);
        assert_eq!(d.unmatched, 1);
    }

    #[test]
    fn zero_agents_pipeline_label_is_unknowable_but_freestyle_is_not() {
        let built_in = Computer {
            class: "hudson.model.Hudson$MasterComputer".into(),
            display_name: "Built-In Node".into(),
            ..Default::default()
        };
        let q = vec![
            pipeline(1, 0, "Waiting for next available executor"),
            freestyle(2, 0, Some("windows")),
        ];
        let d = compute_demand(&q, &[built_in], &templates(), 1);
        assert_eq!(ids(&d, "win"), vec![2]);
        assert_eq!(d.unmatched, 1);
    }

    #[test]
    fn blocked_and_pending_items_are_not_demand() {
        let mut blocked = pipeline(1, 0, "Build #3 is already in progress");
        blocked.buildable = false;
        blocked.blocked = true;
        let mut pending = freestyle(2, 0, Some("linux"));
        pending.pending = true;
        let d = compute_demand(&[blocked, pending], &anchors(), &templates(), 1);
        assert!(d.per_template.iter().all(|t| t.items.is_empty()));
        assert_eq!(d.unmatched, 0);
    }

    #[test]
    fn node_template_mapping_prefers_longest_and_needs_instance_ids() {
        let ts = vec![
            TemplateLabels {
                name: "linux".into(),
                labels: vec![],
                mode: NodeMode::Normal,
            },
            TemplateLabels {
                name: "linux-big".into(),
                labels: vec![],
                mode: NodeMode::Normal,
            },
        ];
        assert_eq!(
            template_of_node(&ts, "linux-big-i-1").unwrap().name,
            "linux-big"
        );
        assert_eq!(template_of_node(&ts, "linux-i-1").unwrap().name, "linux");
        assert_eq!(template_of_node(&ts, "linux-anchor").unwrap().name, "linux");
        assert!(template_of_node(&ts, "linux-builder").is_none());
    }
}

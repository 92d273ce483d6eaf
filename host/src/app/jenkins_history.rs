//! Reads a Jenkins controller's build history over its REST API, for `policy trace import`:
//! the jobs (into folders), each job's `labelExpression`, and its builds page by page.
//!
//! Reads only, each with one GET and Basic auth (an API token needs no crumb). Anything but a
//! JSON answer (a refused connection, 401, 404, a login page) is an error naming the URL.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use reqwest::{StatusCode, header};
use serde_json::Value;

use crate::jenkins::Credentials;
use crate::jenkins::client::encode_segment;
use crate::replay::import::JobHistory;

/// Builds per request: `allBuilds` is paged with Stapler's `{M,N}` range, so a controller with
/// a long history is read in steps rather than loaded whole at once.
const PAGE: usize = 100;

/// What is read of each build.
const BUILD_FIELDS: &str = "number,timestamp,duration,result,building,actions[queuingDurationMillis]";

/// Folders nest; deeper than this is taken for a loop.
const MAX_DEPTH: usize = 20;

/// A Jenkins controller to read from.
pub struct Controller {
    http: reqwest::Client,
    /// Root URL, ending with `/`.
    base: String,
    credentials: Option<Credentials>,
}

/// A job found by [`Controller::jobs`].
#[derive(Debug, Clone, PartialEq)]
pub struct JobRef {
    /// `folder/job`.
    pub full_name: String,
    /// Its path under the root: `job/folder/job/name/`.
    pub path: String,
    /// Whether it exports `labelExpression` (Pipeline jobs do not).
    pub exports_label: bool,
    /// The label expression, if any.
    pub label: Option<String>,
}

impl Controller {
    /// A reader of the controller at `url` (its root, with any context path), authenticated
    /// as `credentials` when given.
    pub fn new(url: &str, credentials: Option<Credentials>) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("--jenkins {url:?} is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
            bail!("--jenkins {url:?}: give the controller's root URL (http or https, no query)");
        }
        let mut base = parsed.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            // A redirect on a read means a login page or a wrong root: say so, do not follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Controller { http, base, credentials })
    }

    /// Every job's history, its builds limited to those that started at or after `since_ms`
    /// (and possibly a few older ones).
    pub async fn history(&self, since_ms: Option<u64>) -> anyhow::Result<Vec<JobHistory>> {
        let mut out = Vec::new();
        for job in self.jobs().await? {
            let builds = self.builds(&job, since_ms).await?;
            out.push(JobHistory { name: job.full_name, exports_label: job.exports_label, label: job.label, builds });
        }
        Ok(out)
    }

    /// Every job, folders (anything that lists `jobs`) walked into.
    pub async fn jobs(&self) -> anyhow::Result<Vec<JobRef>> {
        let mut out = Vec::new();
        let mut folders = vec![(String::new(), String::new(), 0)];
        while let Some((path, prefix, depth)) = folders.pop() {
            let v = self.get(&path, "jobs[_class,name,labelExpression,jobs[name]]").await?;
            for item in v.get("jobs").and_then(Value::as_array).into_iter().flatten() {
                let Some(name) = item.get("name").and_then(Value::as_str) else {
                    bail!("{}{path}api/json lists a job without a name: {item}", self.base);
                };
                let full_name = format!("{prefix}{name}");
                let item_path = format!("{path}job/{}/", encode_segment(name));
                if item.get("jobs").is_some() {
                    if depth >= MAX_DEPTH {
                        bail!("{}{item_path} is nested in more than {MAX_DEPTH} folders: is it a loop?", self.base);
                    }
                    folders.push((item_path, format!("{full_name}/"), depth + 1));
                    continue;
                }
                let label = item.get("labelExpression");
                out.push(JobRef {
                    full_name,
                    path: item_path,
                    exports_label: label.is_some(),
                    label: label.and_then(Value::as_str).map(str::to_owned),
                });
            }
        }
        out.sort_by(|a, b| a.full_name.cmp(&b.full_name));
        Ok(out)
    }

    /// A job's builds, newest first, page by page until a page ends the list or holds only
    /// builds that started before `since_ms`. A build that shows on two pages (new builds
    /// shift the list while it is read) is kept once.
    pub async fn builds(&self, job: &JobRef, since_ms: Option<u64>) -> anyhow::Result<Vec<Value>> {
        let mut by_number = BTreeMap::new();
        for page in 0.. {
            let (from, to) = (page * PAGE, (page + 1) * PAGE);
            let v = self.get(&job.path, &format!("allBuilds[{BUILD_FIELDS}]{{{from},{to}}}")).await?;
            let builds = v.get("allBuilds").and_then(Value::as_array).cloned().unwrap_or_default();
            let len = builds.len();
            let all_older = since_ms.is_some_and(|s| builds.iter().all(|b| b.get("timestamp").and_then(Value::as_u64).is_some_and(|t| t < s)));
            for (i, b) in builds.into_iter().enumerate() {
                // An entry without a number is kept, for the import to name as malformed.
                let key = b.get("number").and_then(Value::as_u64).map_or((1, (from + i) as u64), |n| (0, n));
                by_number.entry(key).or_insert(b);
            }
            if len < PAGE || all_older {
                break;
            }
        }
        Ok(by_number.into_values().rev().collect())
    }

    /// GETs `path` + `api/json?tree=…` and returns the JSON; any other answer is an error naming
    /// the URL and what came back.
    async fn get(&self, path: &str, tree: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}api/json", self.base);
        let mut req = self.http.get(&url).query(&[("tree", tree)]);
        if let Some(c) = &self.credentials {
            req = req.basic_auth(&c.user, Some(c.secret.expose()));
        }
        let resp = req.send().await.map_err(|e| anyhow!("cannot reach Jenkins at {url}: {}", root_cause(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let hint = match status {
                StatusCode::UNAUTHORIZED => ": the user or API token is wrong (--user and --token-file, or the configuration's [jenkins])".to_owned(),
                StatusCode::FORBIDDEN => ": the user may not read it (Overall/Read and Job/Read are needed; without credentials Jenkins answers 403)".to_owned(),
                StatusCode::NOT_FOUND => ": is --jenkins the controller's root URL (with any context path)?".to_owned(),
                s if s.is_redirection() => {
                    let to = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?");
                    format!(" (redirected to {to}): give the controller's root URL, with any context path")
                }
                _ => String::new(),
            };
            bail!("{url} answered HTTP {status}{hint}");
        }
        let kind = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        if !kind.contains("json") {
            let kind = if kind.is_empty() { "no content type".to_owned() } else { kind };
            bail!("{url} answered HTTP {status} with {kind}, not JSON: is --jenkins the controller's root URL?");
        }
        let bytes = ecsp_http::read_capped(resp, ecsp_http::JENKINS_ANSWER_MAX).await.map_err(|e| anyhow!("reading {url}: {e}"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{url} answered HTTP {status} with malformed JSON"))
    }
}

/// The innermost cause of a transport error ("Connection refused (os error 111)"), which
/// says more than reqwest's "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

//! Writing the journal: one gzip member per file, flushed after every record so that a crash
//! loses at most the record being written; files rotated by size and pruned by total size
//! and age.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;

use ecsp_config::JournalConfig;
use ecsp_engine::CycleReport;

use super::record::{Cycle, FORMAT, Header, Seen, VERSION};

/// Journal file names: `journal-<started ms, 13 digits>.jsonl.gz`, so that names sort by age.
const PREFIX: &str = "journal-";
const SUFFIX: &str = ".jsonl.gz";

/// An open journal: the current file and the limits.
pub struct Journal {
    dir: PathBuf,
    header: Header,
    pub(crate) max_file_bytes: u64,
    pub(crate) max_total_bytes: u64,
    max_age: Duration,
    pub(crate) current: Option<(PathBuf, GzEncoder<Counted>)>,
    seen: Seen,
}

/// A file that counts the bytes written to it (the compressed size, without a `stat`).
pub(crate) struct Counted {
    file: File,
    bytes: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Journal {
    /// Opens the journal in `config`'s directory (created private to this user), for the
    /// provisioner `controller_id` whose templates have these label expressions. The first file
    /// is started with the first record.
    pub fn open(config: &JournalConfig, controller_id: &str, templates: std::collections::BTreeMap<String, String>) -> io::Result<Journal> {
        let dir = config.directory();
        std::fs::create_dir_all(&dir).map_err(|e| io::Error::new(e.kind(), format!("cannot create the journal directory {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Journal {
            dir,
            header: Header { format: FORMAT.into(), version: VERSION, controller_id: controller_id.into(), started_ms: 0, templates },
            max_file_bytes: config.max_file_mib * 1024 * 1024,
            max_total_bytes: config.max_total_mib * 1024 * 1024,
            max_age: config.max_age,
            current: None,
            seen: Seen::default(),
        })
    }

    /// The directory written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `report`'s record; rotates and prunes when the file is full. After an error the
    /// next record starts a new file.
    pub fn append(&mut self, report: &CycleReport) -> io::Result<()> {
        let record = Cycle::of(report, &mut self.seen);
        let result = self.write_line(&record);
        if result.is_err() {
            self.current = None;
        }
        result
    }

    fn write_line(&mut self, record: &Cycle) -> io::Result<()> {
        if self.current.is_none() {
            self.start_file(record.at_ms)?;
        }
        let (_, out) = self.current.as_mut().expect("a file was just started");
        serde_json::to_writer(&mut *out, record)?;
        out.write_all(b"\n")?;
        // A sync flush: everything so far decompresses even if the process dies now.
        out.flush()?;
        if out.get_ref().bytes >= self.max_file_bytes {
            if let Some((_, out)) = self.current.take() {
                out.finish()?;
            }
            self.prune(SystemTime::now())?;
        }
        Ok(())
    }

    fn start_file(&mut self, at_ms: u64) -> io::Result<()> {
        let mut at = at_ms;
        let path = loop {
            let path = self.dir.join(format!("{PREFIX}{at:013}{SUFFIX}"));
            if !path.exists() {
                break path;
            }
            at += 1;
        };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))?;
        let mut out = GzEncoder::new(Counted { file, bytes: 0 }, Compression::default());
        self.header.started_ms = at_ms;
        serde_json::to_writer(&mut out, &self.header)?;
        out.write_all(b"\n")?;
        out.flush()?;
        self.current = Some((path, out));
        self.prune(SystemTime::now())
    }

    /// Deletes files whose last write is older than `max-age`, then the oldest while all files
    /// together exceed `max-total-mib`. The file being written is never deleted.
    fn prune(&self, now: SystemTime) -> io::Result<()> {
        let current = self.current.as_ref().map(|(p, _)| p.clone());
        let mut files = journal_files(&self.dir)?;
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.retain(|(p, _, _)| Some(p) != current.as_ref());
        for (path, len, modified) in files {
            let too_old = now.duration_since(modified).is_ok_and(|age| age > self.max_age);
            if too_old || total > self.max_total_bytes {
                std::fs::remove_file(&path)?;
                total -= len;
                tracing::info!(file = %path.display(), too_old, "journal file deleted");
            }
        }
        Ok(())
    }
}

/// The journal files in `dir`, oldest first: (path, size, last modified).
pub(crate) fn journal_files(dir: &Path) -> io::Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
            let meta = entry.metadata()?;
            files.push((entry.path(), meta.len(), meta.modified()?));
        }
    }
    files.sort();
    Ok(files)
}

/// The journal written off the reconcile loop: [`JournalSink::record`] hands the report to a
/// thread and returns at once.
pub struct JournalSink {
    /// `None` once dropped: the writer thread then drains what is queued and ends.
    tx: Option<SyncSender<CycleReport>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Reports waiting for the writer thread; past this a record is dropped (and logged).
const BACKLOG: usize = 256;

impl JournalSink {
    /// Starts the writer thread for `journal`.
    pub fn start(mut journal: Journal) -> io::Result<JournalSink> {
        let (tx, rx) = sync_channel::<CycleReport>(BACKLOG);
        let writer = std::thread::Builder::new().name("journal".into()).spawn(move || {
            let mut failing = false;
            for report in rx {
                match journal.append(&report) {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!(dir = %journal.dir().display(), "the journal is written again");
                    }
                    Ok(()) => {}
                    // Logged once per outage, not every cycle.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(dir = %journal.dir().display(), error = %e, "cannot write the decision journal; cycles go unrecorded until it works again");
                    }
                    Err(_) => {}
                }
            }
            if let Some((_, out)) = journal.current.take() {
                let _ = out.finish();
            }
        })?;
        Ok(JournalSink { tx: Some(tx), writer: Some(writer) })
    }

    /// Queues `report` for the journal; never blocks the loop.
    pub fn record(&self, report: &CycleReport) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(r)) = tx.try_send(report.clone()) {
            tracing::warn!(cycle = r.cycle, "the journal writer is behind; this cycle goes unrecorded");
        }
    }
}

impl Drop for JournalSink {
    /// Waits for the writer to record what is queued and close its file (the gzip trailer),
    /// so that a daemon that stops leaves whole files.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

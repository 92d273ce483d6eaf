//! Reading a journal directory back, oldest file first.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use flate2::read::GzDecoder;

use super::record::{Cycle, FORMAT, Header, VERSION};
use super::writer::journal_files;

/// One file of a journal: its header and its cycles, in order.
#[derive(Debug)]
pub struct JournalFile {
    /// The file.
    pub path: PathBuf,
    /// Its first line.
    pub header: Header,
    /// Every complete record after it.
    pub cycles: Vec<Cycle>,
}

/// Reads every journal file in `dir`, oldest first. A file cut short (the process died while
/// writing it) yields what it holds up to the cut; a line that is not a valid record is an
/// error naming the file and the line.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<JournalFile>> {
    let files = journal_files(dir).with_context(|| format!("cannot list the journal directory {}", dir.display()))?;
    if files.is_empty() {
        bail!("{} holds no journal files (journal-*.jsonl.gz)", dir.display());
    }
    files.into_iter().map(|(path, _, _)| read_file(&path)).collect()
}

/// Reads one journal file.
pub fn read_file(path: &Path) -> anyhow::Result<JournalFile> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = BufReader::new(GzDecoder::new(file)).lines();
    let first = match lines.next() {
        Some(Ok(line)) => line,
        _ => bail!("{}: no header line (an empty or damaged file)", path.display()),
    };
    let header: Header =
        serde_json::from_str(&first).with_context(|| format!("{} line 1: not a journal header", path.display()))?;
    if header.format != FORMAT {
        bail!("{} line 1: format {:?}, expected {FORMAT:?}", path.display(), header.format);
    }
    if header.version > VERSION {
        bail!("{} line 1: journal version {} is newer than this build reads ({VERSION}); upgrade ecs-provisioner", path.display(), header.version);
    }
    let mut cycles = Vec::new();
    let mut lines = lines.enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let number = i + 2;
        let cut = |e: &dyn std::fmt::Display| {
            tracing::warn!(file = %path.display(), line = number, error = %e, "the journal file ends early; reading what it holds");
        };
        let line = match line {
            Ok(line) => line,
            // The tail of a file whose writer died: keep what came before.
            Err(e) => {
                cut(&e);
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(cycle) => cycles.push(cycle),
            // A record cut in the middle can only be the last thing in the file.
            Err(e) if lines.peek().is_none_or(|(_, next)| next.is_err()) => {
                cut(&e);
                break;
            }
            Err(e) => return Err(e).with_context(|| format!("{} line {number}", path.display())),
        }
    }
    Ok(JournalFile { path: path.to_owned(), header, cycles })
}

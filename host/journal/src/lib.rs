//! The decision journal (docs/journal.md): what every cycle of `run` saw, proposed, was clamped
//! to and did, as gzip-compressed JSON lines in files rotated by size and pruned by total size
//! and age. It feeds `policy trace import --journal`, which turns it into a replay trace.
//!
//! Nothing in it is a secret or free text: no error messages, no reasons a policy wrote, no
//! offline messages, and builds are named by a digest of their URL.

pub mod reader;
pub mod record;
pub mod writer;

pub use reader::{JournalFile, read_dir};
pub use record::{Cycle, FORMAT, Header, VERSION};
pub use writer::{Journal, JournalSink};

#[cfg(test)]
mod tests;

//! The disks of an emulated instance, as DescribeDisks shows them.

use serde::{Deserialize, Serialize};

/// One disk of an emulated instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SimDisk {
    /// `system` or `data`.
    pub kind: String,
    pub category: String,
    pub size_gib: u32,
    /// Empty for categories without levels.
    pub performance_level: String,
    pub delete_with_instance: bool,
}

//! Identifiers shared by every layer.

use std::fmt;

/// Identifies one task for its whole life: queued, admitted, settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u32);

impl TaskId {
    /// The integer JavaScript sees.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task#{}", self.0)
    }
}

/// Scheduling priority. HIGH goes before NORMAL before LOW; see `control` for the rule that
/// keeps lower levels from starving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Urgent work, e.g. the planner's next step.
    High = 0,
    /// The default.
    Normal = 1,
    /// Bulk work; refused first under memory pressure.
    Low = 2,
}

impl Priority {
    /// All levels, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// 0 for HIGH, 1 for NORMAL, 2 for LOW.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stable name JavaScript uses.
    pub fn name(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

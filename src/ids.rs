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

/// Bits of a [`RunId`] that hold the slot's index; the generation sits above them.
const RUN_INDEX_BITS: u32 = 22;
/// The index part of a [`RunId`] (also the most run slots that can exist at once).
pub(crate) const RUN_INDEX_MASK: u32 = (1 << RUN_INDEX_BITS) - 1;
/// Bits of the generation: ids stay below 2^30, so run.js can flag one with bit 30.
const RUN_GENERATION_MASK: u32 = (1 << (30 - RUN_INDEX_BITS)) - 1;

/// One use of a run slot (a `run()` task, see `engine::runs`): its index and that index's
/// generation, packed below 2^30 (the form JavaScript sees: `id & 0x3fffff` is the index its
/// per-slot cells live at). Its own type, not a [`TaskId`]: the controller holds the two apart
/// (`control::Work`), so neither id carries a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(u32);

impl RunId {
    /// The id of use `generation` of slot `index`.
    pub(crate) fn new(index: usize, generation: u8) -> RunId {
        RunId((u32::from(generation) & RUN_GENERATION_MASK) << RUN_INDEX_BITS | index as u32)
    }

    /// The id as an integer (what JavaScript holds).
    pub fn get(self) -> u32 {
        self.0
    }

    /// An id JavaScript handed back; one never issued (or of an earlier use) matches nothing.
    pub fn from_raw(raw: u32) -> RunId {
        RunId(raw)
    }

    /// The slab index.
    pub fn index(self) -> usize {
        (self.0 & RUN_INDEX_MASK) as usize
    }

    /// Which use of its index this id is.
    pub(crate) fn generation(self) -> u8 {
        ((self.0 >> RUN_INDEX_BITS) & RUN_GENERATION_MASK) as u8
    }
}

/// What waits for and holds a slot: a sub-agent task or a run slot. Two id spaces, two
/// variants: a run slot's id is never dressed up as a task id (no tag bits), and whoever is
/// admitted is told which kind it is by the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Work {
    /// A sub-agent task.
    Task(TaskId),
    /// A run task's slot (`run()` work).
    Run(RunId),
}

impl Work {
    /// The sub-agent task, if it is one.
    pub fn task(self) -> Option<TaskId> {
        match self {
            Work::Task(task) => Some(task),
            Work::Run(_) => None,
        }
    }
}

/// Scheduling priority. HIGH goes before NORMAL before LOW; see `control` for the rule that
/// keeps lower levels from starving. Read from input by its lowercase name (`"high"`), the
/// spelling [`Priority::name`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

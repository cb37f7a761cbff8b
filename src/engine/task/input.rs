//! A task spec as the user writes it: [`TaskSpecInput`] is its one definition (the JS boundary
//! reads it with serde; a test checks the TypeScript `TaskSpec` against its fields), and
//! [`TaskSpec::try_from`] turns it into a validated [`TaskSpec`]. Numbers arrive as JavaScript
//! numbers (`f64`) and are checked here, so a fraction or a negative says which field it is.

use serde::Deserialize;

use super::{MAX_DEADLINE_MS, MAX_RETRIES, TaskSpec};
use crate::error::Error;
use crate::host::SessionId;
use crate::ids::{Priority, TaskId};

/// A task spec as written; unknown keys are refused. `agent` and `prompt` are required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSpecInput {
    /// Agent type; decides the lane.
    pub agent: String,
    /// The prompt.
    pub prompt: String,
    /// `high`, `normal` (default) or `low`.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// From dispatch to settlement, ms (default 30 min).
    #[serde(default)]
    pub deadline_ms: Option<f64>,
    /// `provider/model`.
    #[serde(default)]
    pub model: Option<String>,
    /// The session the child shows under (OpenCode's spelling).
    #[serde(default, rename = "parentID")]
    pub parent_id: Option<String>,
    /// Makes a repeated submission return the first task.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Ids of tasks that must succeed first.
    #[serde(default)]
    pub depends_on: Option<Vec<f64>>,
    /// Extra attempts after an upstream failure or timeout.
    #[serde(default)]
    pub retries: Option<f64>,
    /// Refuse at once while the model's breaker is open.
    #[serde(default)]
    pub fail_fast: Option<bool>,
    /// The task whose session this one continues.
    #[serde(default)]
    pub follow_up_of: Option<f64>,
}

impl TryFrom<TaskSpecInput> for TaskSpec {
    type Error = Error;

    /// Checks every field; an error names it (`dependsOn[1]`, `prompt`).
    fn try_from(input: TaskSpecInput) -> Result<Self, Error> {
        let mut spec = TaskSpec::new(input.agent, input.prompt);
        if let Some(p) = input.priority {
            spec.priority = p;
        }
        if let Some(ms) = input.deadline_ms {
            spec.deadline_ms = whole("deadlineMs", ms, MAX_DEADLINE_MS)?;
        }
        spec.model = input.model;
        spec.parent = input.parent_id.map(SessionId);
        spec.idempotency_key = input.idempotency_key;
        for (i, d) in input.depends_on.unwrap_or_default().into_iter().enumerate() {
            // The element's path is written only for a bad one.
            let id = whole("dependsOn", d, u64::from(u32::MAX)).map_err(|e| match e {
                Error::InvalidInput { reason, .. } => {
                    Error::input(format!("dependsOn[{i}]"), reason)
                }
                other => other,
            })?;
            spec.depends_on.push(TaskId(id as u32));
        }
        if let Some(r) = input.retries {
            spec.retries = if r == 0.0 {
                0
            } else {
                whole("retries", r, u64::from(MAX_RETRIES))? as u32
            };
        }
        spec.fail_fast = input.fail_fast.unwrap_or(false);
        if let Some(n) = input.follow_up_of {
            spec.follow_up_of = Some(TaskId(whole("followUpOf", n, u64::from(u32::MAX))? as u32));
        }
        spec.validate()?;
        Ok(spec)
    }
}

/// A whole number in `1..=max` from a JavaScript number.
pub(crate) fn whole(field: &str, n: f64, max: u64) -> Result<u64, Error> {
    if n.is_finite() && n.fract() == 0.0 && n >= 1.0 && n <= max as f64 {
        Ok(n as u64)
    } else {
        Err(Error::input(
            field,
            format!("must be a whole number in 1..={max}"),
        ))
    }
}

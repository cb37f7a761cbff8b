//! The engine core, sans-I/O: the [`lifecycle`] owns the one call table, the controller, the
//! session pool, the task table and the run slots. It never calls the host: a method that needs
//! the host queues a host request, which the driver (the JS bindings, a test, a benchmark) takes
//! and starts **after** it has released its borrow of the core, so a host that calls back in
//! synchronously finds it free. Readings (`now`, `memory`) are likewise taken by the driver and
//! passed in.

pub(crate) mod lifecycle;
pub(crate) mod runs;
pub(crate) mod task;
pub(crate) mod tasks;

use crate::error::Error;

/// `value` must have something besides white space, and at most `max` bytes.
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::input(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(Error::input(field, format!("must be at most {max} bytes")));
    }
    Ok(())
}

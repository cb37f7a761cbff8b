//! The sessions the engine owns for sub-agent tasks: the [`Pool`], from warm to deleted. It only
//! records; the engine performs the I/O. Every session the engine creates is created for
//! admitted work (a task holding its lane's permit, or a warm session for queued work), so no
//! session exists before admission.

mod pool;

pub(crate) use self::pool::{Acquired, Pool, PoolConfig, PoolCounters};

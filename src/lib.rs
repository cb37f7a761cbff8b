//! # foreman
//!
//! Runs many OpenCode sub-agent sessions in parallel, safely: admission before any session
//! exists, bookkeeping of every session created, and typed errors with stable codes. The crate
//! builds natively (everything but [`bindings`] is plain Rust, tested with `cargo test`) and to
//! WebAssembly, where [`bindings`] exports the `Engine` class a JavaScript host drives.
//!
//! Layers, from the bottom: `error`, `ids`, `codec` ← `host`, `config` ← `control`,
//! `executor`, `sessions`, `store` ← `engine` ← `bindings`. The modules are private; what a Rust
//! caller (the native tests, benchmarks and examples) may use is re-exported here, one name per
//! concept. See `ARCHITECTURE.md` for the codemap and the invariants each layer keeps.
//!
//! Time and memory come from the host ([`Host`]): the standard library clock traps on wasm32.

#![forbid(unsafe_code)]

mod codec;
mod config;
mod control;
mod engine;
mod error;
mod executor;
mod host;
mod ids;
mod sessions;
mod store;

/// The JavaScript API (the exported `Engine` class). It compiles natively too, but its
/// functions need a JS engine.
pub mod bindings;

// Configuration: what users write, and the validated settings.
pub use config::{
    AdaptiveInput, AimdConfig, BreakerConfig, BreakerInput, Config, ConfigInput, FairnessInput,
    GateConfig, LivenessConfig, LivenessInput, PressureInput, RetentionConfig, RetentionInput,
};
// Errors and names shared by every layer.
pub use error::{Error, FailureClass, HostOpKind};
pub use ids::{Priority, RunId, TaskId};
// The host interface, and the seeded simulator the native tests drive the engine with.
pub use host::{
    AssistantMessage, CallId, Clock, Delivery, FakeHost, Host, HostEvent, HostFailure, HostOp,
    HostOutcome, HostReply, HostRequest, MemoryReading, MessageError, OpProfile, PromptProfile,
    SessionHealth, SessionId, Violations, fake_violations_none,
};
// The concurrency controller and its breaker.
pub use control::{
    Admission, Breaker, BreakerEvent, BreakerPhase, BreakerState, Controller, LimitCause,
    LimitChange, LimitScope, Outcome, Permit, Request, Ticket, Verdict, Work,
};
// The task store.
pub use store::{Snapshot, Store, Transaction};
// The core: the task lifecycle, run tasks, task specs and states.
pub use engine::lifecycle::{Engine, EngineStats, JournalStats, RunRequest, TaskEvent};
pub use engine::task::{TaskPhase, TaskSpec, TaskSpecInput, TaskState};

/// The journal's format, for verifiers outside the engine: record encoding, the hash chain,
/// the frames of an export, and verification against a trusted head (or, for an export that
/// starts at the beginning or with a checkpoint, on its own).
pub mod journal {
    pub use crate::store::{
        Decoded, Hash, Head, Verified, chain, decode_record, encode_record, frames,
        standalone_anchor, task_key, verify, verify_each, verify_standalone,
    };
}

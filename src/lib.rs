//! # foreman
//!
//! Runs many OpenCode sub-agent sessions in parallel, safely: admission before any session
//! exists, bookkeeping of every session created, and typed errors with stable codes. The crate
//! builds natively (everything but [`bindings`] is plain Rust, tested with `cargo test`) and to
//! WebAssembly, where [`bindings`] exports the `Engine` class a JavaScript host drives.
//!
//! Layers, from the bottom: [`error`], [`ids`], `codec` ← [`host`], [`config`] ← [`control`],
//! [`executor`], [`sessions`], [`store`] ← [`engine`] ← `bindings`.
//! See `ARCHITECTURE.md` for the codemap and the invariants each layer keeps.
//!
//! Time and memory come from the host ([`host::Host`]): the standard library clock traps on
//! wasm32.

#![forbid(unsafe_code)]

pub mod config;
pub mod control;
pub mod engine;
pub mod error;
pub mod executor;
pub mod host;
pub mod ids;
pub mod sessions;
pub mod store;

/// The JavaScript API (the exported `Engine` class). It compiles natively too, but its
/// functions need a JS engine.
pub mod bindings;

mod codec;

pub use config::{Config, ConfigInput};
pub use engine::{CreateSession, Engine, Settled, Stats};
pub use error::Error;
pub use host::{
    CallId, FailureClass, FakeHost, Host, HostOutcome, HostRequest, MemoryReading, SessionId,
};
pub use ids::{Priority, TaskId};

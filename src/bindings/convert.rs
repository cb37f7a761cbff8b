//! Conversions at the JS boundary: Rust errors into JS `Error`s, JS values into typed readings,
//! replies and failures. Nothing here panics, whatever JavaScript passes.

use js_sys::{Error as JsError, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::host::{
    AssistantMessage, FailureClass, HostEvent, HostFailure, HostOpKind, HostOutcome, HostReply,
    MessageError, SessionHealth, SessionId,
};

/// The largest integer a JS number holds exactly.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// Turns an engine error into a JS `Error` with `name = "ForemanError"`, a stable `code`, and
/// the variant's fields as properties (`key`, `field`, `member`, `op`, `class`, `call`).
#[cold]
#[inline(never)]
pub(crate) fn to_js(error: &Error) -> JsValue {
    let js = JsError::new(&error.to_string());
    js.set_name("ForemanError");
    let obj: &Object = js.as_ref();
    set(obj, "code", &error.code().into());
    match error {
        Error::InvalidConfig { key, .. } => set(obj, "key", &key.into()),
        Error::InvalidHost { member, .. } => set(obj, "member", &member.into()),
        Error::InvalidInput { field, .. } => set(obj, "field", &field.into()),
        Error::HostFailed { op, class, .. } => {
            set(obj, "op", &op.name().into());
            set(obj, "class", &class.name().into());
        }
        Error::HostBadReply { op, .. } => set(obj, "op", &op.name().into()),
        Error::HostBadReading { reading, .. } => set(obj, "reading", &(*reading).into()),
        Error::MemoryPressure { used, limit } => {
            set(obj, "used", &(*used as f64).into());
            set(obj, "limit", &(*limit as f64).into());
        }
        Error::BreakerOpen { key, retry_at_ms } => {
            set(obj, "key", &key.into());
            set(
                obj,
                "retryAt",
                &retry_at_ms.map_or(JsValue::NULL, |t| (t as f64).into()),
            );
        }
        Error::UnknownCall { call } => set(obj, "call", &(*call).into()),
        Error::UnknownTask { task } | Error::TaskForgotten { task } => {
            set(obj, "task", &(*task).into());
        }
        Error::EngineFull { footprint, budget } => {
            set(obj, "footprint", &(*footprint as f64).into());
            set(obj, "budget", &(*budget as f64).into());
        }
        Error::Fenced { epoch, newer } => {
            set(obj, "epoch", &(*epoch as f64).into());
            set(obj, "newer", &(*newer as f64).into());
        }
        Error::TimedOut { after_ms } => set(obj, "afterMs", &(*after_ms as f64).into()),
        _ => {}
    }
    js.into()
}

/// Sets a property; an object that refuses (frozen, a proxy that throws) keeps its old value.
/// Never inlined: it has a few hundred call sites, each a crossing into JS anyway.
#[inline(never)]
pub(crate) fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &key.into(), value);
}

/// Reads a property; a getter that throws reads as `undefined`.
#[inline(never)]
pub(crate) fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() && !obj.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

#[wasm_bindgen(module = "/src/bindings/run.js")]
extern "C" {
    #[wasm_bindgen(js_name = safeClone)]
    fn safe_clone(value: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = isArray)]
    fn is_array_js(value: &JsValue) -> bool;
    #[wasm_bindgen(js_name = readableBytes)]
    fn readable_bytes_js(value: &JsValue) -> bool;
}

/// `Array.isArray(value)`, false when it throws (a revoked proxy throws there).
pub(crate) fn is_array(value: &JsValue) -> bool {
    is_array_js(value)
}

/// Whether `value` is a real, attached `Uint8Array` (not a proxy of one, not a detached one),
/// checked without an exception.
pub(crate) fn is_bytes(value: &JsValue) -> bool {
    readable_bytes_js(value)
}

/// A copy of `value` made of plain data, read without letting a throwing proxy or getter
/// unwind through WebAssembly; the error says why it could not be read.
pub(crate) fn plain(value: &JsValue) -> Result<JsValue, String> {
    if !value.is_object() {
        return Ok(value.clone());
    }
    let result = safe_clone(value);
    match Reflect::get(&result, &"error".into()) {
        Ok(error) if !error.is_undefined() => Err(error.as_string().unwrap_or_default()),
        _ => Ok(Reflect::get(&result, &"value".into()).unwrap_or(JsValue::UNDEFINED)),
    }
}

/// `value` as a function, if it is one (`typeof`, which no proxy trap can intercept).
pub(crate) fn function(value: JsValue) -> Option<js_sys::Function> {
    value.is_function().then(|| value.unchecked_into())
}

fn is_plain_object(value: &JsValue) -> bool {
    value.is_object() && !value.is_function() && !is_array(value)
}

/// A JS number that must be finite, non-negative and exact as an integer; fractions are floored.
pub(crate) fn non_negative(value: &JsValue) -> Result<u64, String> {
    let Some(n) = value.as_f64() else {
        return Err(format!("expected a number, got {}", type_name(value)));
    };
    if !n.is_finite() || !(0.0..=MAX_SAFE).contains(&n) {
        return Err(format!(
            "expected a finite number in 0..=2^53-1, got {}",
            crate::config::show_number(n)
        ));
    }
    Ok(n.floor() as u64)
}

/// `typeof`-like description for error messages.
pub(crate) fn type_name(value: &JsValue) -> String {
    if value.is_null() {
        "null".into()
    } else if is_array(value) {
        "an array".into()
    } else {
        value
            .js_typeof()
            .as_string()
            .unwrap_or_else(|| "an unknown value".into())
    }
}

/// Parses the host's answer to `op` into a typed outcome.
///
/// - `createSession`: the id, or a Session object with a string `id`;
/// - `prompt`, `abort`, `deleteSession`: any value (the call succeeded);
/// - `lastAssistantMessage`: `null`/`undefined` before the first message, else an OpenCode
///   message — `{ info, parts }` as `session.messages` returns it, or the `info` object itself:
///   `time.created`, `time.completed`, `finish`, `error { name, data { message, statusCode } }`;
///   text from the `text` parts (or a `text` field);
/// - `checkSession`: `"busy"`, `"idle"` or `"gone"`;
/// - `sessionStatuses`: `{ [sessionID]: { type: "busy" | "retry" } }`, non-idle sessions only.
pub(crate) fn reply(op: HostOpKind, value: &JsValue) -> HostOutcome {
    let value = match plain(value) {
        Ok(v) => v,
        Err(reason) => return HostOutcome::BadReply(reason),
    };
    let value = &value;
    match op {
        HostOpKind::CreateSession => {
            // Accept the id itself or a Session object as the SDK returns it.
            let id = value.as_string().or_else(|| get(value, "id").as_string());
            match id {
                Some(id) if !id.trim().is_empty() && id.len() <= 256 => {
                    HostOutcome::Ok(HostReply::SessionCreated(SessionId(id)))
                }
                _ => HostOutcome::BadReply(format!(
                    "expected a session id string or an object with a string `id`, got {}",
                    type_name(value)
                )),
            }
        }
        HostOpKind::Prompt | HostOpKind::Abort | HostOpKind::DeleteSession => {
            HostOutcome::Ok(HostReply::Done)
        }
        HostOpKind::LastAssistantMessage => {
            if value.is_undefined() || value.is_null() {
                return HostOutcome::Ok(HostReply::Message(None));
            }
            match message(value) {
                Ok(m) => HostOutcome::Ok(HostReply::Message(Some(m))),
                Err(reason) => HostOutcome::BadReply(reason),
            }
        }
        HostOpKind::CheckSession => match value.as_string().as_deref() {
            Some("busy") => {
                HostOutcome::Ok(HostReply::Health(SessionHealth::Exists { busy: true }))
            }
            Some("idle") => {
                HostOutcome::Ok(HostReply::Health(SessionHealth::Exists { busy: false }))
            }
            Some("gone") => HostOutcome::Ok(HostReply::Health(SessionHealth::Gone)),
            _ => HostOutcome::BadReply(format!(
                "expected \"busy\", \"idle\" or \"gone\", got {}",
                type_name(value)
            )),
        },
        HostOpKind::SessionStatuses => statuses(value),
    }
}

/// `sessionStatuses`' answer: OpenCode's `session.status()` map, session id → `{ type: "busy"
/// | "retry", … }` (an `idle` entry is read as absent).
fn statuses(value: &JsValue) -> HostOutcome {
    if !is_plain_object(value) {
        return HostOutcome::BadReply(format!(
            "expected a map of session id to status, got {}",
            type_name(value)
        ));
    }
    let mut out = Vec::new();
    for key in Object::keys(value.unchecked_ref::<Object>()).iter() {
        let Some(id) = key.as_string() else { continue };
        let status = get(value, &id);
        let kind = get(&status, "type")
            .as_string()
            .or_else(|| status.as_string());
        match kind.as_deref() {
            Some("busy") => out.push((SessionId(id), false)),
            Some("retry") => out.push((SessionId(id), true)),
            Some("idle") => {}
            _ => {
                return HostOutcome::BadReply(format!(
                    "session {id}: expected a status with type \"busy\" or \"retry\""
                ));
            }
        }
    }
    HostOutcome::Ok(HostReply::Statuses(out))
}

fn message(value: &JsValue) -> Result<AssistantMessage, String> {
    let info = get(value, "info");
    let info = if info.is_object() {
        info
    } else {
        value.clone()
    };
    if !info.is_object() {
        return Err(format!(
            "expected a message object, got {}",
            type_name(value)
        ));
    }
    let time = get(&info, "time");
    let created_ms =
        non_negative(&get(&time, "created")).map_err(|e| format!("time.created: {e}"))?;
    let completed_ms = Some(get(&time, "completed"))
        .filter(|c| !c.is_undefined() && !c.is_null())
        .map(|c| non_negative(&c).map_err(|e| format!("time.completed: {e}")))
        .transpose()?;
    let finish = get(&info, "finish").as_string();
    let error = message_error(&get(&info, "error"));
    let parts = get(value, "parts");
    let text = if js_sys::Array::is_array(&parts) {
        js_sys::Array::from(&parts)
            .iter()
            .filter(|p| get(p, "type").as_string().as_deref() == Some("text"))
            .filter_map(|p| get(&p, "text").as_string())
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        get(value, "text").as_string().unwrap_or_default()
    };
    Ok(AssistantMessage {
        created_ms,
        created_wall_ms: created_ms,
        completed_ms,
        finish,
        error,
        text,
    })
}

/// An OpenCode message error (`{ name, data { message, statusCode } }`), if `error` is one.
pub(crate) fn message_error(error: &JsValue) -> Option<MessageError> {
    if !error.is_object() {
        return None;
    }
    let name = get(error, "name").as_string().unwrap_or_default();
    let data = get(error, "data");
    let message = get(&data, "message")
        .as_string()
        .or_else(|| get(error, "message").as_string())
        .unwrap_or_default();
    Some(match name.as_str() {
        "MessageAbortedError" => MessageError::Aborted,
        "APIError" => {
            let status = non_negative(&get(&data, "statusCode"))
                .ok()
                .and_then(|s| u16::try_from(s).ok());
            let retry_after_ms = retry_after(&get(&data, "responseHeaders"));
            MessageError::Api {
                status,
                message,
                retry_after_ms,
            }
        }
        _ => MessageError::Other { name, message },
    })
}

/// The wait a provider asked for in its response headers (lower-case names, as OpenCode keeps
/// them): `retry-after-ms`, else `retry-after` in seconds (an HTTP date is not read); ≤ a day.
fn retry_after(headers: &JsValue) -> Option<u64> {
    let read = |name: &str, scale: f64| {
        let v = get(headers, name);
        // `+s` (a string primitive: cannot throw; NaN is refused below), not Rust's float
        // parser, which alone is ~18 KB of the .wasm.
        let n = match v.as_string() {
            Some(s) => (!s.trim().is_empty()).then(|| v.unchecked_into_f64()),
            None => v.as_f64(),
        }?;
        (n >= 0.0).then(|| (n * scale).min(86_400_000.0) as u64)
    };
    read("retry-after-ms", 1.0).or_else(|| read("retry-after", 1_000.0))
}

/// Parses an OpenCode bus event into what the engine listens for. `Ok(None)` for events it
/// does not use (most of them); `Err` names what is wrong with one it does use.
///
/// - `session.status` `{ sessionID, status: { type: "busy" | "idle" | "retry", attempt, next } }`
/// - `session.idle` `{ sessionID }`
/// - `session.error` `{ sessionID?, error }` (without a session it concerns nobody here)
/// - `session.deleted` `{ info: { id } }`
pub(crate) fn host_event(value: &JsValue) -> Result<Option<HostEvent>, String> {
    if !value.is_object() {
        return Err(format!(
            "expected an event object, got {}",
            type_name(value)
        ));
    }
    let Some(kind) = get(value, "type").as_string() else {
        return Err("`type` must be a string".into());
    };
    let props = get(value, "properties");
    let session = |v: &JsValue, what: &str| -> Result<SessionId, String> {
        match v.as_string() {
            Some(s) if !s.is_empty() && s.len() <= 256 => Ok(SessionId(s)),
            _ => Err(format!("`{what}` must be a session id")),
        }
    };
    Ok(match kind.as_str() {
        "session.status" => {
            let id = session(&get(&props, "sessionID"), "properties.sessionID")?;
            let status = get(&props, "status");
            match get(&status, "type").as_string().as_deref() {
                Some("busy") => Some(HostEvent::Busy(id)),
                Some("idle") => Some(HostEvent::Idle(id)),
                Some("retry") => Some(HostEvent::Retry {
                    session: id,
                    attempt: non_negative(&get(&status, "attempt"))
                        .ok()
                        .and_then(|a| u32::try_from(a).ok())
                        .unwrap_or(0),
                    next_ms: non_negative(&get(&status, "next")).unwrap_or(0),
                }),
                _ => return Err("`properties.status.type` must be busy, idle or retry".into()),
            }
        }
        "session.idle" => Some(HostEvent::Idle(session(
            &get(&props, "sessionID"),
            "properties.sessionID",
        )?)),
        "session.error" => {
            let id = get(&props, "sessionID");
            if id.is_undefined() {
                return Ok(None);
            }
            let id = session(&id, "properties.sessionID")?;
            let error = message_error(&get(&props, "error")).unwrap_or(MessageError::Other {
                name: "UnknownError".into(),
                message: String::new(),
            });
            Some(HostEvent::Error { session: id, error })
        }
        "session.deleted" => Some(HostEvent::Deleted(session(
            &get(&get(&props, "info"), "id"),
            "properties.info.id",
        )?)),
        _ => None,
    })
}

/// Classifies a rejection from the host.
///
/// In order: an explicit `class` property naming a [`FailureClass`] wins; an `AbortError` or
/// `MessageAbortedError` is a cancel; a numeric `status`/`statusCode` (also under `data`, as the
/// SDK nests it) is classified by [`FailureClass::from_status`]; anything else is upstream.
/// `retryAfterMs` (ms) or `retryAfter` (s) is kept.
pub(crate) fn failure(value: &JsValue) -> HostFailure {
    let class = class_of(value);
    let message = get(value, "message")
        .as_string()
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("the host rejected with {}", type_name(value)));
    let retry_after_ms = non_negative(&get(value, "retryAfterMs")).ok().or_else(|| {
        non_negative(&get(value, "retryAfter"))
            .ok()
            .map(|s| s.saturating_mul(1000))
    });
    HostFailure {
        class,
        message,
        retry_after_ms,
    }
}

pub(crate) fn class_of(value: &JsValue) -> FailureClass {
    let named = get(value, "class").as_string();
    let from_name = match named.as_deref() {
        Some("upstream") => Some(FailureClass::Upstream),
        Some("rate_limited") => Some(FailureClass::RateLimited),
        Some("timeout") => Some(FailureClass::Timeout),
        Some("cancelled") => Some(FailureClass::Cancelled),
        Some("invalid") => Some(FailureClass::Invalid),
        _ => None,
    };
    if let Some(class) = from_name {
        return class;
    }
    if matches!(
        get(value, "name").as_string().as_deref(),
        Some("AbortError" | "MessageAbortedError")
    ) {
        return FailureClass::Cancelled;
    }
    let data = get(value, "data");
    let status = [
        get(value, "status"),
        get(value, "statusCode"),
        get(&data, "statusCode"),
    ]
    .iter()
    .find_map(|v| non_negative(v).ok())
    .and_then(|s| u16::try_from(s).ok());
    status.map_or(FailureClass::Upstream, FailureClass::from_status)
}

//! The exported `Engine` driven through real JavaScript hosts. The same suite runs under Node,
//! headless Chrome and headless Firefox (`make test-wasm`), so the pass counts can be compared.
#![cfg(target_arch = "wasm32")]

use foreman::bindings::{ConfigObject, CreateSessionObject, Engine, HostObject};
use js_sys::{JSON, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen(inline_js = r#"
export function makeHost(mode) {
  let n = 0;
  const host = {
    clock: 1000,
    engine: null,
    seen: [],
    now() { return this.clock; },
    memory() { return { used: 300, limit: 1000 }; },
    createSession(input, callId) {
      this.seen.push({ ...input, callId });
      n += 1;
      switch (mode) {
        case "ok": this.clock += 7; return Promise.resolve("ses_" + n);
        case "object": return Promise.resolve({ id: "obj_" + n, title: input.title });
        case "429": return Promise.reject(Object.assign(new Error("Too Many Requests"), { status: 429 }));
        case "abort": return Promise.reject(Object.assign(new Error("aborted"), { name: "AbortError" }));
        case "500": return Promise.reject({ data: { statusCode: 503 }, message: "unavailable" });
        case "class": return Promise.reject({ class: "invalid", message: "bad agent" });
        case "throw": throw new Error("sync failure");
        case "number": return Promise.resolve(42);
        case "byid": { const e = this.engine; setTimeout(() => e.resolve(callId, "late_" + callId), 0); return undefined; }
        case "reenter": { this.reentered = this.engine.stats().pendingCalls; return Promise.resolve("r_" + n); }
        case "never": return new Promise(() => {});
      }
    },
  };
  return host;
}
export function setEngine(host, engine) { host.engine = engine; }
export async function peakOfRuns(engine, n) {
  let active = 0, peak = 0;
  const tick = () => new Promise((r) => setTimeout(r, 1));
  const all = [];
  for (let i = 0; i < n; i++) {
    all.push(engine.run(async () => { active++; peak = Math.max(peak, active); await tick(); active--; return i; }, { lane: "bench" }));
  }
  const results = await Promise.all(all);
  return results.length === n && results[n - 1] === n - 1 ? peak : -1;
}
export async function breakerTrip(engine) {
  const b = engine.breaker("p/m");
  const first = await b.execute(() => Promise.resolve("ok"));
  const upstream = Object.assign(new Error("503"), { status: 503 });
  for (let i = 0; i < 5; i++) await b.execute(() => Promise.reject(upstream)).catch(() => {});
  const refused = await b.execute(() => "ran").then(() => "ran", (e) => e.code);
  const shared = await engine.run(() => "ran", { key: "p/m", failFast: true }).then(() => "ran", (e) => e.code);
  return `${first} ${refused} ${shared}`;
}
export function taskHost() {
  const host = {
    engine: null, n: 0, sessions: new Map(),
    now: () => Date.now(),
    memory: () => ({ used: 1, limit: 10 }),
    createSession() { const id = "task_" + ++this.n; this.sessions.set(id, []); return Promise.resolve(id); },
    prompt({ sessionID, text }) {
      const created = Date.now();
      setTimeout(() => {
        this.engine.hostEvent({ type: "session.status", properties: { sessionID, status: { type: "busy" } } });
        setTimeout(() => {
          this.sessions.get(sessionID).push({ info: { role: "assistant", time: { created, completed: Date.now() }, finish: "stop" }, parts: [{ type: "text", text: "echo " + text }] });
          this.engine.hostEvent({ type: "session.idle", properties: { sessionID } });
        }, 5);
      }, 5);
      return Promise.resolve();
    },
    abort() { return Promise.resolve(true); },
    deleteSession({ sessionID }) { this.sessions.delete(sessionID); return Promise.resolve(true); },
    lastAssistantMessage({ sessionID }) { return Promise.resolve(this.sessions.get(sessionID)?.at(-1) ?? null); },
    checkSession({ sessionID }) { return Promise.resolve(this.sessions.has(sessionID) ? "idle" : "gone"); },
  };
  return host;
}
export function obj(json) { return JSON.parse(json); }
"#)]
extern "C" {
    #[wasm_bindgen(js_name = makeHost)]
    fn make_host(mode: &str) -> JsValue;
    #[wasm_bindgen(js_name = setEngine)]
    fn set_engine(host: &JsValue, engine: &JsValue);
    #[wasm_bindgen(js_name = peakOfRuns)]
    fn peak_of_runs(engine: &JsValue, n: u32) -> js_sys::Promise;
    #[wasm_bindgen(js_name = taskHost)]
    fn task_host() -> JsValue;
    #[wasm_bindgen(js_name = breakerTrip)]
    fn breaker_trip(engine: &JsValue) -> js_sys::Promise;
    fn obj(json: &str) -> JsValue;
}

fn engine(mode: &str) -> (Engine, JsValue) {
    let host = make_host(mode);
    let engine = Engine::new(host.clone().unchecked_into::<HostObject>(), None).unwrap();
    (engine, host)
}

fn prop(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &key.into()).unwrap()
}

fn code(error: &JsValue) -> String {
    prop(error, "code").as_string().unwrap_or_default()
}

fn input(json: &str) -> CreateSessionObject {
    obj(json).unchecked_into()
}

async fn create(engine: &Engine, json: &str) -> Result<JsValue, JsValue> {
    JsFuture::from(js_sys::Promise::from(JsValue::from(
        engine.create_session(input(json)),
    )))
    .await
}

fn stat(engine: &Engine, path: &str) -> JsValue {
    let stats: JsValue = engine.stats().unwrap().into();
    path.split('.').fold(stats, |v, k| prop(&v, k))
}

#[wasm_bindgen_test]
fn default_lanes_follow_the_design() {
    let (e, _) = engine("ok");
    let lanes = JSON::stringify(&stat(&e, "lanes"))
        .unwrap()
        .as_string()
        .unwrap();
    for (name, limit) in [("planner", 2), ("worker", 8), ("reviewer", 4), ("other", 4)] {
        let lane = format!(
            r#"{{"name":"{name}","limit":{limit},"effective":{limit},"inUse":0,"queued":{{"high":0,"normal":0,"low":0}},"pendingCalls":0}}"#
        );
        assert!(lanes.contains(&lane), "{lanes}");
    }
    assert_eq!(stat(&e, "memory.perMille").as_f64(), Some(300.0));
}

#[wasm_bindgen_test]
fn bad_hosts_are_refused_with_the_member_named() {
    let cases = [
        ("null", "host"),
        ("5", "host"),
        ("{}", "now"),
        (r#"{"now": 1}"#, "now"),
    ];
    for (json, member) in cases {
        let err = Engine::new(obj(json).unchecked_into(), None)
            .err()
            .expect(json);
        assert_eq!(code(&err), "INVALID_HOST", "{json}");
        assert_eq!(
            prop(&err, "member").as_string().as_deref(),
            Some(member),
            "{json}"
        );
        assert_eq!(
            prop(&err, "name").as_string().as_deref(),
            Some("ForemanError")
        );
    }
}

#[wasm_bindgen_test]
fn bad_configs_are_refused_with_the_key_named() {
    let cases = [
        (r#"{"lanes": {"worker": 0}}"#, "lanes.worker"),
        (r#"{"lanes": {"worker": 2.5}}"#, "lanes.worker"),
        (r#"{"lanes": {"worker": "8"}}"#, "lanes.worker"),
        (r#"{"lanes": {"bad name": 1}}"#, "lanes.bad name"),
        (r#"{"lanse": {}}"#, "lanse"),
        (r#"[1]"#, "config"),
        (r#""x""#, "config"),
    ];
    for (json, key) in cases {
        let host: HostObject = make_host("ok").unchecked_into();
        let config: ConfigObject = obj(json).unchecked_into();
        let err = Engine::new(host, Some(config)).err().expect(json);
        assert_eq!(code(&err), "INVALID_CONFIG", "{json}");
        assert_eq!(
            prop(&err, "key").as_string().as_deref(),
            Some(key),
            "{json}"
        );
    }
}

#[wasm_bindgen_test]
fn a_config_merges_over_the_defaults() {
    let config: ConfigObject = obj(r#"{"lanes": {"worker": 16, "scout": 1}}"#).unchecked_into();
    let e = Engine::new(make_host("ok").unchecked_into(), Some(config)).unwrap();
    let lanes = JSON::stringify(&stat(&e, "lanes"))
        .unwrap()
        .as_string()
        .unwrap();
    assert!(lanes.contains(r#""name":"worker","limit":16"#), "{lanes}");
    assert!(lanes.contains(r#""name":"scout","limit":1"#), "{lanes}");
    assert!(lanes.contains(r#""name":"planner","limit":2"#), "{lanes}");
}

#[wasm_bindgen_test]
fn unusable_readings_are_refused_at_construction() {
    let bad_now = obj(r#"{"memory": null, "createSession": null}"#);
    let f = js_sys::Function::new_no_args("return 'soon'");
    let m = js_sys::Function::new_no_args("return { used: 1, limit: 0 }");
    let c = js_sys::Function::new_no_args("return 'x'");
    Reflect::set(&bad_now, &"now".into(), &f).unwrap();
    Reflect::set(&bad_now, &"memory".into(), &m).unwrap();
    Reflect::set(&bad_now, &"createSession".into(), &c).unwrap();
    let err = Engine::new(bad_now.clone().unchecked_into(), None)
        .err()
        .unwrap();
    assert_eq!(code(&err), "HOST_BAD_READING");
    assert_eq!(prop(&err, "reading").as_string().as_deref(), Some("now"));
    Reflect::set(
        &bad_now,
        &"now".into(),
        &js_sys::Function::new_no_args("return 5"),
    )
    .unwrap();
    let err = Engine::new(bad_now.unchecked_into(), None).err().unwrap();
    assert_eq!(prop(&err, "reading").as_string().as_deref(), Some("memory"));
}

#[wasm_bindgen_test]
async fn create_session_resolves_with_the_host_id_and_counts_it() {
    let (e, host) = engine("ok");
    let id = create(&e, r#"{"agent": "worker", "parentID": "ses_parent"}"#)
        .await
        .unwrap();
    assert_eq!(id.as_string().as_deref(), Some("ses_1"));
    let seen = JSON::stringify(&prop(&host, "seen"))
        .unwrap()
        .as_string()
        .unwrap();
    assert_eq!(
        seen,
        r#"[{"agent":"worker","parentID":"ses_parent","title":"foreman: worker","callId":1}]"#
    );
    assert_eq!(stat(&e, "sessions.created").as_f64(), Some(1.0));
    assert_eq!(stat(&e, "sessions.meanCreateMs").as_f64(), Some(7.0));
    assert_eq!(stat(&e, "pendingCalls").as_f64(), Some(0.0));
}

#[wasm_bindgen_test]
async fn a_session_object_reply_is_accepted() {
    let (e, _) = engine("object");
    let id = create(&e, r#"{"agent": "planner", "title": "plan"}"#)
        .await
        .unwrap();
    assert_eq!(id.as_string().as_deref(), Some("obj_1"));
}

#[wasm_bindgen_test]
async fn host_rejections_are_classified() {
    for (mode, class) in [
        ("429", "rate_limited"),
        ("abort", "cancelled"),
        ("500", "upstream"),
        ("class", "invalid"),
        ("throw", "upstream"),
    ] {
        let (e, _) = engine(mode);
        let err = create(&e, r#"{"agent": "worker"}"#).await.unwrap_err();
        assert_eq!(code(&err), "HOST_FAILED", "{mode}");
        assert_eq!(
            prop(&err, "class").as_string().as_deref(),
            Some(class),
            "{mode}"
        );
        assert_eq!(
            prop(&err, "op").as_string().as_deref(),
            Some("createSession"),
            "{mode}"
        );
        assert_eq!(stat(&e, "sessions.failed").as_f64(), Some(1.0), "{mode}");
    }
}

#[wasm_bindgen_test]
async fn a_reply_of_the_wrong_shape_is_a_bad_reply() {
    let (e, _) = engine("number");
    let err = create(&e, r#"{"agent": "worker"}"#).await.unwrap_err();
    assert_eq!(code(&err), "HOST_BAD_REPLY");
}

#[wasm_bindgen_test]
async fn bad_input_rejects_and_queues_nothing() {
    let (e, host) = engine("ok");
    for (json, field) in [
        (r#"{"agent": ""}"#, "agent"),
        (r#"{}"#, "agent"),
        (r#"{"agent": 5}"#, "agent"),
        (r#"{"agent": "w", "prompt": "x"}"#, "prompt"),
        (r#"null"#, "agent"),
    ] {
        let err = create(&e, json).await.unwrap_err();
        assert_eq!(code(&err), "INVALID_INPUT", "{json}");
        assert_eq!(
            prop(&err, "field").as_string().as_deref(),
            Some(field),
            "{json}"
        );
    }
    assert_eq!(js_sys::Array::from(&prop(&host, "seen")).length(), 0);
}

#[wasm_bindgen_test]
async fn a_host_may_answer_by_id_and_only_once() {
    let (e, host) = engine("byid");
    let engine_js = JsValue::from(e);
    set_engine(&host, &engine_js);
    // Drive the by-id engine through JS, as a plugin would.
    let create_fn: js_sys::Function = prop(&engine_js, "createSession").unchecked_into();
    let promise: js_sys::Promise = create_fn
        .call1(&engine_js, &obj(r#"{"agent": "reviewer"}"#))
        .unwrap()
        .unchecked_into();
    let id = JsFuture::from(promise).await.unwrap();
    assert_eq!(id.as_string().as_deref(), Some("late_1"));
    let resolve: js_sys::Function = prop(&engine_js, "resolve").unchecked_into();
    let again = resolve
        .call2(&engine_js, &1.into(), &"twice".into())
        .unwrap_err();
    assert_eq!(code(&again), "UNKNOWN_CALL");
    let bad = resolve
        .call2(&engine_js, &f64::NAN.into(), &"x".into())
        .unwrap_err();
    assert_eq!(code(&bad), "INVALID_INPUT");
}

#[wasm_bindgen_test]
async fn a_host_may_call_back_in_synchronously() {
    let (e, host) = engine("reenter");
    let engine_js = JsValue::from(e);
    set_engine(&host, &engine_js);
    let create_fn: js_sys::Function = prop(&engine_js, "createSession").unchecked_into();
    let promise: js_sys::Promise = create_fn
        .call1(&engine_js, &obj(r#"{"agent": "worker"}"#))
        .unwrap()
        .unchecked_into();
    let id = JsFuture::from(promise).await.unwrap();
    assert_eq!(id.as_string().as_deref(), Some("r_1"));
    assert_eq!(
        prop(&host, "reentered").as_f64(),
        Some(1.0),
        "the call was pending during the host call"
    );
}

#[wasm_bindgen_test]
async fn dispose_rejects_pending_calls_and_refuses_later_ones() {
    let (e, _) = engine("never");
    let pending = js_sys::Promise::from(JsValue::from(
        e.create_session(input(r#"{"agent": "worker"}"#)),
    ));
    assert_eq!(stat(&e, "pendingCalls").as_f64(), Some(1.0));
    e.dispose();
    e.dispose();
    let err = JsFuture::from(pending).await.unwrap_err();
    assert_eq!(code(&err), "DISPOSED");
    assert_eq!(code(&e.stats().err().unwrap()), "DISPOSED");
    let later = create(&e, r#"{"agent": "worker"}"#).await.unwrap_err();
    assert_eq!(code(&later), "DISPOSED");
}

#[wasm_bindgen_test]
async fn run_is_installed_and_holds_the_lane_limit() {
    let host = make_host("ok");
    let config: ConfigObject = obj(r#"{"lanes": {"bench": 2}}"#).unchecked_into();
    let e: JsValue = Engine::new(host.unchecked_into(), Some(config))
        .unwrap()
        .into();
    let peak = JsFuture::from(peak_of_runs(&e, 20)).await.unwrap();
    assert_eq!(
        peak.as_f64(),
        Some(2.0),
        "20 tasks, never more than 2 at once"
    );
}

#[wasm_bindgen_test]
async fn a_key_breaker_opens_after_five_upstream_failures_for_breaker_calls_and_run_tasks() {
    let (engine, _host) = engine("ok");
    let e: JsValue = engine.into();
    let summary = JsFuture::from(breaker_trip(&e)).await.unwrap();
    assert_eq!(
        summary.as_string().as_deref(),
        Some("ok BREAKER_OPEN BREAKER_OPEN")
    );
}

/// Asserts a task info object says `succeeded` with `result`.
fn assert_succeeded_with(info: &JsValue, result: &str) {
    assert_eq!(
        prop(info, "state").as_string().as_deref(),
        Some("succeeded")
    );
    assert_eq!(prop(info, "result").as_string().as_deref(), Some(result));
}

#[wasm_bindgen_test]
async fn a_delegated_task_runs_through_the_host_and_survives_a_restore() {
    let host = task_host();
    let e = Engine::new(host.clone().unchecked_into(), None).unwrap();
    let e_js: JsValue = e.into();
    set_engine(&host, &e_js);
    let call = |name: &str, args: &[JsValue]| -> Result<JsValue, JsValue> {
        let f: js_sys::Function = prop(&e_js, name).unchecked_into();
        f.apply(&e_js, &args.iter().collect::<js_sys::Array>())
    };
    let id = call(
        "delegate",
        &[obj(
            r#"{"agent": "worker", "prompt": "hi", "parentID": "ses_p"}"#,
        )],
    )
    .unwrap();
    assert_eq!(id.as_f64(), Some(1.0));
    let wait: js_sys::Promise = call("wait", &[id.clone()]).unwrap().unchecked_into();
    let info = JsFuture::from(wait).await.unwrap();
    assert_succeeded_with(&info, "echo hi");
    assert_eq!(call("verify", &[]).unwrap().as_bool(), Some(true));
    let journal = call("journalExport", &[]).unwrap();
    let head = call("journalHead", &[]).unwrap();
    let restored = Engine::restore(
        journal.unchecked_into(),
        head.unchecked_into(),
        task_host().unchecked_into(),
        None,
    )
    .unwrap();
    let status: JsValue = restored.status(id).unwrap().into();
    assert_succeeded_with(&status, "echo hi");
    restored.dispose();
    call("dispose", &[]).unwrap();
}

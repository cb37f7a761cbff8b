//! The exported `Engine` driven through real JavaScript hosts. The same suite runs under Node,
//! headless Chrome and headless Firefox (`make test-wasm`), so the pass counts can be compared.
#![cfg(target_arch = "wasm32")]

use foreman::bindings::{ConfigObject, HostObject, JsEngine as Engine};
use js_sys::{JSON, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen(inline_js = r#"
export function makeHost(mode) {
  // A host whose sessions run turns (see taskHost), and whose createSession answers by `mode`.
  const host = taskHost();
  let n = 0;
  host.seen = [];
  host.memory = () => ({ used: 300, limit: 1000 });
  host.createSession = function (input, callId) {
    this.seen.push({ ...input, callId });
    n += 1;
    const made = (id) => { this.sessions.set(id, []); return id; };
    switch (mode) {
      case "ok": return Promise.resolve(made("ses_" + n));
      case "object": return Promise.resolve({ id: made("obj_" + n), title: input.title });
      case "429": return Promise.reject(Object.assign(new Error("Too Many Requests"), { status: 429 }));
      case "abort": return Promise.reject(Object.assign(new Error("aborted"), { name: "AbortError" }));
      case "500": return Promise.reject({ data: { statusCode: 503 }, message: "unavailable" });
      case "class": return Promise.reject({ class: "invalid", message: "bad agent" });
      case "throw": throw new Error("sync failure");
      case "number": return Promise.resolve(42);
      case "byid": { const e = this.engine; setTimeout(() => e.resolve(callId, made("late_" + callId)), 0); return undefined; }
      case "reenter": { this.reentered = this.engine.stats().pendingCalls; return Promise.resolve(made("r_" + n)); }
      case "never": return new Promise(() => {});
    }
  };
  return host;
}
/** Delegates `spec` and resolves with the settled task's info. */
export async function settled(engine, spec) {
  return engine.wait(engine.delegate(spec));
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
export async function limitStorm(engine) {
  // Four 429s at once in `other` (limit 4), then busy successes: what on("limit") hears.
  const seen = [];
  const off = engine.on("limit", (e) => seen.push(`${e.type} ${e.scope} ${e.name} ${e.from}→${e.to} ${e.cause}`));
  const tooMany = () => Promise.reject(Object.assign(new Error("slow down"), { status: 429 }));
  await Promise.allSettled(Array.from({ length: 4 }, () => engine.run(tooMany)));
  await Promise.all(Array.from({ length: 40 }, (_, i) => engine.run(async () => i)));
  off();
  return seen.join(", ");
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
    #[wasm_bindgen(js_name = limitStorm)]
    fn limit_storm(engine: &JsValue) -> js_sys::Promise;
    fn settled(engine: &JsValue, spec: JsValue) -> js_sys::Promise;
    fn obj(json: &str) -> JsValue;
}

/// An engine over `make_host(mode)`, as the JS object a plugin holds, and its host.
fn engine(mode: &str) -> (JsValue, JsValue) {
    let host = make_host(mode);
    let engine: JsValue = Engine::new(host.clone().unchecked_into::<HostObject>(), None)
        .unwrap()
        .into();
    set_engine(&host, &engine);
    (engine, host)
}

/// Calls the engine's JS method `name` with `args`.
fn call(engine: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = prop(engine, name).unchecked_into();
    f.apply(engine, &args.iter().collect::<js_sys::Array>())
}

/// Delegates the task `json` and waits for it to settle: its task info.
async fn run_task(engine: &JsValue, json: &str) -> JsValue {
    JsFuture::from(settled(engine, obj(json))).await.unwrap()
}

fn prop(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &key.into()).unwrap()
}

fn code(error: &JsValue) -> String {
    prop(error, "code").as_string().unwrap_or_default()
}

fn stat(engine: &JsValue, path: &str) -> JsValue {
    let stats = call(engine, "stats", &[]).unwrap();
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
            r#"{{"name":"{name}","limit":{limit},"effective":{limit},"inUse":0,"queued":{{"high":0,"normal":0,"low":0}}}}"#
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
    let e: JsValue = Engine::new(make_host("ok").unchecked_into(), Some(config))
        .unwrap()
        .into();
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
async fn a_task_session_is_created_by_the_host_under_its_parent() {
    let (e, host) = engine("ok");
    let info = run_task(
        &e,
        r#"{"agent": "worker", "prompt": "hi", "parentID": "ses_parent"}"#,
    )
    .await;
    assert_succeeded_with(&info, "echo hi");
    let seen = JSON::stringify(&prop(&host, "seen"))
        .unwrap()
        .as_string()
        .unwrap();
    assert_eq!(
        seen,
        r#"[{"agent":"worker","parentID":"ses_parent","title":"foreman: worker #1","callId":1}]"#
    );
    assert_eq!(stat(&e, "pool.creates").as_f64(), Some(1.0));
    assert_eq!(stat(&e, "pendingCalls").as_f64(), Some(0.0));
}

#[wasm_bindgen_test]
async fn a_session_object_reply_is_accepted() {
    let (e, _) = engine("object");
    let info = run_task(&e, r#"{"agent": "planner", "prompt": "plan"}"#).await;
    assert_succeeded_with(&info, "echo plan");
}

#[wasm_bindgen_test]
async fn host_rejections_are_classified() {
    // Upstream failures and rate limits are retried (three creations, with backoff) before the
    // task fails: the modes run side by side.
    let modes = [
        ("429", "rate_limited"),
        ("abort", "cancelled"),
        ("500", "upstream"),
        ("class", "invalid"),
        ("throw", "upstream"),
    ];
    let engines: Vec<(JsValue, JsValue)> = modes.iter().map(|(mode, _)| engine(mode)).collect();
    let waits: js_sys::Array = engines
        .iter()
        .map(|(e, _)| settled(e, obj(r#"{"agent": "worker", "prompt": "p"}"#)))
        .collect();
    let infos = JsFuture::from(js_sys::Promise::all(&waits)).await.unwrap();
    for (i, (mode, class)) in modes.iter().enumerate() {
        let info = js_sys::Array::from(&infos).get(i as u32);
        assert_eq!(
            prop(&info, "state").as_string().as_deref(),
            Some("failed"),
            "{mode}"
        );
        let error = prop(&info, "error");
        assert_eq!(
            prop(&error, "class").as_string().as_deref(),
            Some(*class),
            "{mode}"
        );
    }
}

#[wasm_bindgen_test]
async fn a_reply_of_the_wrong_shape_is_a_bad_reply() {
    let (e, _) = engine("number");
    let info = run_task(&e, r#"{"agent": "worker", "prompt": "p"}"#).await;
    let error = prop(&info, "error");
    assert_eq!(
        prop(&error, "class").as_string().as_deref(),
        Some("invalid")
    );
    let message = prop(&error, "message").as_string().unwrap_or_default();
    assert!(message.starts_with("bad reply"), "{message}");
}

#[wasm_bindgen_test]
fn bad_input_throws_and_starts_nothing() {
    let (e, host) = engine("ok");
    for (json, field) in [
        (r#"{"agent": "", "prompt": "p"}"#, "agent"),
        (r#"{"prompt": "p"}"#, "agent"),
        (r#"{"agent": 5, "prompt": "p"}"#, "agent"),
        (r#"{"agent": "w", "prompt": "x", "title": "t"}"#, "title"),
        (r#"null"#, "agent"),
    ] {
        let err = call(&e, "delegate", &[obj(json)]).unwrap_err();
        assert_eq!(code(&err), "INVALID_INPUT", "{json}");
        let named = prop(&err, "field").as_string().unwrap_or_default();
        assert!(named.ends_with(field), "{json}: {named}");
    }
    assert_eq!(js_sys::Array::from(&prop(&host, "seen")).length(), 0);
}

#[wasm_bindgen_test]
async fn a_host_may_answer_by_id_and_only_once() {
    let (e, _) = engine("byid");
    let info = run_task(&e, r#"{"agent": "reviewer", "prompt": "r"}"#).await;
    assert_succeeded_with(&info, "echo r");
    let again = call(&e, "resolve", &[1.into(), "twice".into()]).unwrap_err();
    assert_eq!(code(&again), "UNKNOWN_CALL");
    let bad = call(&e, "resolve", &[f64::NAN.into(), "x".into()]).unwrap_err();
    assert_eq!(code(&bad), "INVALID_INPUT");
}

#[wasm_bindgen_test]
async fn a_host_may_call_back_in_synchronously() {
    let (e, host) = engine("reenter");
    let info = run_task(&e, r#"{"agent": "worker", "prompt": "w"}"#).await;
    assert_succeeded_with(&info, "echo w");
    assert_eq!(
        prop(&host, "reentered").as_f64(),
        Some(1.0),
        "the call was pending during the host call"
    );
}

#[wasm_bindgen_test]
async fn dispose_rejects_waiters_and_refuses_later_calls() {
    let (e, _) = engine("never");
    let id = call(
        &e,
        "delegate",
        &[obj(r#"{"agent": "worker", "prompt": "p"}"#)],
    )
    .unwrap();
    let waiting: js_sys::Promise = call(&e, "wait", &[id]).unwrap().unchecked_into();
    assert_eq!(stat(&e, "pendingCalls").as_f64(), Some(1.0));
    call(&e, "dispose", &[]).unwrap();
    call(&e, "dispose", &[]).unwrap();
    let err = JsFuture::from(waiting).await.unwrap_err();
    assert_eq!(code(&err), "DISPOSED");
    assert_eq!(code(&call(&e, "stats", &[]).unwrap_err()), "DISPOSED");
    let later = call(
        &e,
        "delegate",
        &[obj(r#"{"agent": "worker", "prompt": "p"}"#)],
    )
    .unwrap_err();
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
    let (e, _host) = engine("ok");
    let summary = JsFuture::from(breaker_trip(&e)).await.unwrap();
    assert_eq!(
        summary.as_string().as_deref(),
        Some("ok BREAKER_OPEN BREAKER_OPEN")
    );
}

#[wasm_bindgen_test]
async fn a_429_storm_halves_the_lane_limit_and_busy_successes_raise_it_back_as_limit_events() {
    let (e, _host) = engine("ok");
    let seen = JsFuture::from(limit_storm(&e)).await.unwrap();
    assert_eq!(
        seen.as_string().as_deref(),
        Some(
            "limit lane other 4→2 rate_limited, limit lane other 2→3 recovery, \
             limit lane other 3→4 recovery"
        )
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

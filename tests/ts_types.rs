//! The TypeScript types users see (`src/bindings/types.d.ts`) against the serde types the
//! engine reads (`ConfigInput`, `TaskSpecInput`): same keys at every level, and a key optional
//! in TypeScript exactly when serde lets it be absent.
//!
//! The serde side is read from the derives themselves: a recording deserializer walks each type
//! as serde does and notes the `fields` list passed to `deserialize_struct`, per path, and which
//! fields are read through `deserialize_option` or a default (so may be absent). The TypeScript
//! side is parsed from the interface's members (inline object types give the nested paths).
//! The claims at the end show the comparison fails when a key exists on one side only.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use foreman::{ConfigInput, TaskSpecInput};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Keys per object path (`""` for the root, `breaker` for a nested object), each with whether
/// it may be absent.
type Shape = BTreeMap<String, BTreeMap<String, bool>>;

// ---------------------------------------------------------------- the serde side

#[derive(Debug)]
struct Stop(String);

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Stop {}
impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Stop(msg.to_string())
    }
}

/// Reads any value as serde asks for it, recording structs; leaves get a neutral value.
struct Recorder<'a> {
    shape: &'a mut Shape,
    path: String,
    /// Set when the value was reached through `deserialize_option`.
    optional: &'a mut bool,
}

impl<'de> Deserializer<'de> for Recorder<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_unit()
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_bool(false)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_f64(1.0)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_str("x")
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_str("x")
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        *self.optional = true;
        v.visit_some(self)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Stop> {
        v.visit_enum(de::value::StrDeserializer::<Stop>::new(variants[0]))
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_seq(Empty)
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_map(Empty)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Stop> {
        self.shape.entry(self.path.clone()).or_default();
        v.visit_map(Fields {
            shape: self.shape,
            path: self.path,
            fields,
            next: 0,
        })
    }
    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 char bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct identifier ignored_any
    }
}

/// A struct's fields, each once, in order.
struct Fields<'a> {
    shape: &'a mut Shape,
    path: String,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(de::value::StrDeserializer::<Stop>::new(field))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let field = self.fields[self.next];
        self.next += 1;
        let path = if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        };
        let mut optional = false;
        let value = seed.deserialize(Recorder {
            shape: self.shape,
            path,
            optional: &mut optional,
        })?;
        self.shape
            .get_mut(&self.path)
            .unwrap()
            .insert(field.to_owned(), optional);
        Ok(value)
    }
}

/// An empty map or sequence.
struct Empty;

impl<'de> MapAccess<'de> for Empty {
    type Error = Stop;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, _: K) -> Result<Option<K::Value>, Stop> {
        Ok(None)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _: V) -> Result<V::Value, Stop> {
        Err(Stop("no value".into()))
    }
}

impl<'de> SeqAccess<'de> for Empty {
    type Error = Stop;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        _: T,
    ) -> Result<Option<T::Value>, Stop> {
        Ok(None)
    }
}

/// The shape serde reads for `T`. (Every field that may be absent is an `Option`, which the
/// recorder sees; a non-`Option` field with a serde default would read as required here.)
fn serde_shape<T: for<'de> Deserialize<'de>>() -> Shape {
    let mut shape = Shape::new();
    let mut optional = false;
    T::deserialize(Recorder {
        shape: &mut shape,
        path: String::new(),
        optional: &mut optional,
    })
    .expect("every type reads from the recorder");
    shape
}

// ---------------------------------------------------------------- the TypeScript side

/// `text` without `/* */` and `//` comments.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("//") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The members of an object type's body (`a?: number; b: { c: string }`), split at the top
/// level.
fn members(body: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in body.char_indices() {
        match c {
            '{' | '(' | '[' | '<' => depth += 1,
            '}' | ')' | ']' | '>' => depth -= 1,
            ';' | ',' if depth == 0 => {
                out.push(body[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(body[start..].trim());
    out.into_iter().filter(|m| !m.is_empty()).collect()
}

/// Adds the shape of an object type's body at `path`, and of its inline object members below.
fn ts_body(body: &str, path: &str, shape: &mut Shape) {
    let keys = shape.entry(path.to_owned()).or_default();
    let mut nested = Vec::new();
    for member in members(body) {
        let (name, ty) = member.split_once(':').expect("a member is `name: type`");
        let (name, optional) = match name.trim().strip_suffix('?') {
            Some(n) => (n.trim(), true),
            None => (name.trim(), false),
        };
        keys.insert(name.to_owned(), optional);
        let ty = ty.trim();
        if let Some(inner) = ty.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            let below = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            nested.push((inner.to_owned(), below));
        }
    }
    for (inner, below) in nested {
        ts_body(&inner, &below, shape);
    }
}

/// The shape of `export interface <name> { … }` in `text`.
fn ts_shape(text: &str, name: &str) -> Shape {
    let text = strip_comments(text);
    let head = format!("export interface {name} {{");
    let start = text
        .find(&head)
        .unwrap_or_else(|| panic!("no interface {name}"))
        + head.len();
    let mut depth = 1;
    let end = text[start..]
        .char_indices()
        .find_map(|(i, c)| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(start + i)
        })
        .expect("the interface is closed");
    let mut shape = Shape::new();
    ts_body(&text[start..end], "", &mut shape);
    shape
}

// ---------------------------------------------------------------- the comparison

/// Every difference between the two shapes, one line each.
fn differences(what: &str, serde: &Shape, ts: &Shape) -> Vec<String> {
    let mut out = Vec::new();
    for (path, keys) in serde {
        let Some(ts_keys) = ts.get(path) else {
            out.push(format!(
                "{what}: object `{path}` is read by serde, not typed in TypeScript"
            ));
            continue;
        };
        for (key, optional) in keys {
            match ts_keys.get(key) {
                None => out.push(format!(
                    "{what}: `{path}` key `{key}` is read by serde, missing in TypeScript"
                )),
                Some(o) if o != optional => out.push(format!(
                    "{what}: `{path}` key `{key}` is {} for serde, {} in TypeScript",
                    if *optional { "optional" } else { "required" },
                    if *o { "optional" } else { "required" },
                )),
                Some(_) => {}
            }
        }
        for key in ts_keys.keys().filter(|k| !keys.contains_key(*k)) {
            out.push(format!(
                "{what}: `{path}` key `{key}` is typed in TypeScript, refused by serde"
            ));
        }
    }
    for path in ts.keys().filter(|p| !serde.contains_key(*p)) {
        out.push(format!(
            "{what}: object `{path}` is typed in TypeScript, not read as a struct by serde"
        ));
    }
    out
}

fn types_d_ts() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bindings/types.d.ts");
    std::fs::read_to_string(path).expect("types.d.ts")
}

fn check(what: &str, serde: &Shape, ts_text: &str) -> Vec<String> {
    differences(what, serde, &ts_shape(ts_text, what))
}

fn config_shape() -> Shape {
    serde_shape::<ConfigInput>()
}

fn spec_shape() -> Shape {
    serde_shape::<TaskSpecInput>()
}

#[test]
fn foreman_config_matches_config_input() {
    let problems = check("ForemanConfig", &config_shape(), &types_d_ts());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The walk did see the nested objects (a recorder that saw nothing would match nothing).
    let shape = config_shape();
    assert_eq!(shape[""].len(), 9, "{shape:?}");
    assert_eq!(shape["breaker"].len(), 4);
    assert!(shape["liveness"].contains_key("skewMs"));
}

#[test]
fn task_spec_matches_task_spec_input() {
    let problems = check("TaskSpec", &spec_shape(), &types_d_ts());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let shape = spec_shape();
    assert!(!shape[""]["agent"], "agent is required");
    assert!(shape[""]["parentID"], "parentID is optional");
}

#[test]
fn a_key_on_one_side_only_is_found() {
    let ts = types_d_ts();
    // A key added to the TypeScript type only.
    let added = ts.replacen(
        "  followUpOf?: number;",
        "  followUpOf?: number;\n  colour?: string;",
        1,
    );
    assert_ne!(added, ts);
    let problems = check("TaskSpec", &spec_shape(), &added);
    assert_eq!(
        problems,
        ["TaskSpec: `` key `colour` is typed in TypeScript, refused by serde"]
    );
    // A nested key missing from the TypeScript type (as if added to `BreakerInput` only).
    let removed = ts.replacen("closeAfter?: number ", "", 1);
    assert_ne!(removed, ts);
    let problems = check("ForemanConfig", &config_shape(), &removed);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`breaker` key `closeAfter` is read by serde")),
        "{problems:?}"
    );
    // A required key typed optional.
    let loosened = ts.replacen("  agent: string;", "  agent?: string;", 1);
    let problems = check("TaskSpec", &spec_shape(), &loosened);
    assert_eq!(
        problems,
        ["TaskSpec: `` key `agent` is required for serde, optional in TypeScript"]
    );
}

//! Inputs from JavaScript read into the core's serde types (`ConfigInput`, `TaskSpecInput`, a
//! `list` filter): the types are the one definition of what a user may write; this file only
//! reads a JS value into them and names where it went wrong.
//!
//! Values arrive here after the catching copy ([`plain`]), so they are plain data: primitives,
//! arrays and plain objects with data properties only (no getter, no proxy can run).
//!
//! The deserializer is this file's [`Value`], a serde `Deserializer` over a plain JS value, and
//! not `serde_wasm_bindgen`'s (the design's first choice), for three measured reasons:
//! - `serde_wasm_bindgen` reads a struct by asking for its known fields only, so
//!   `deny_unknown_fields` would never see a key it does not know (and an array would read as a
//!   struct with every field absent). Here a struct is read from all of an object's own keys, so
//!   a typo is refused by serde itself, naming the key.
//! - Its type errors are written through serde's `Unexpected`, whose display formats floats
//!   with Rust's float formatting (~18 KB alone): reading with it grew the module by ~40 KB,
//!   reading with this file by ~11 KB (from 352 KB; the budget is 350 KB).
//! - The walk knows the key or index of every value it hands on, so an error gets its full path
//!   (`lanes.worker`, `dependsOn[1]`, the unknown key itself) where it unwinds. (A path tracker
//!   wrapping the deserializer, such as `serde_path_to_error`, names an unknown field by its
//!   parent, and would wrap every visitor a second time.)
//!
//! Measured again with the whole engine in: `read_plain` calling `serde_wasm_bindgen::from_value`
//! (0.6.5) instead, this reader dropped, makes the `.wasm` 387,291 B raw and 160,799 B gzip
//! (+37,959 / +18,112, over the budget of 350,000 / 145,000), and two JS checks then fail:
//! `new Engine(host, { typo: 1 })` is accepted, and a task spec's bad `priority` is reported at
//! `spec`.
//!
//! Values arrive as JS numbers, strings, booleans, arrays and objects; serde asks for the
//! shape it expects and gets a [`ReadError`] in words a JavaScript user knows
//! (`expected a number, got string`) when the value is another.
//!
//! Invariant: no input makes this code panic or throw; every failure is a [`ReadError`].

use std::fmt;

use js_sys::{Array, Object};
use serde::Deserialize;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use wasm_bindgen::{JsCast, JsValue};

use super::convert::{is_array, plain, type_name};

/// Why an input could not be read, and where: the path is relative to the value read, dotted
/// for keys and bracketed for indices (`breaker.openMs`, `dependsOn[1]`); empty for the value
/// itself. Boxed: a result carries one pointer for its error, so the reads that succeed (all
/// of them, nearly always) move less.
#[derive(Debug)]
pub(crate) struct ReadError(Box<(String, String)>);

impl ReadError {
    fn at(path: String, reason: String) -> Self {
        ReadError(Box::new((path, reason)))
    }

    fn new(reason: String) -> Self {
        ReadError::at(String::new(), reason)
    }

    /// The path and the reason.
    pub(crate) fn into_parts(self) -> (String, String) {
        *self.0
    }

    /// The error as seen from the object holding it under `key` (a JS string).
    #[cold]
    #[inline(never)]
    fn under_key(self, key: &JsValue) -> Self {
        self.under(&key.as_string().unwrap_or_default())
    }

    fn under(mut self, key: &str) -> Self {
        let path = &mut self.0.0;
        *path = match path.as_bytes().first() {
            None => key.to_owned(),
            Some(b'[') => format!("{key}{path}"),
            Some(_) => format!("{key}.{path}"),
        };
        self
    }

    /// The error as seen from the array holding it at `index`.
    #[cold]
    #[inline(never)]
    fn under_index(self, index: usize) -> Self {
        self.under(&format!("[{index}]"))
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.0.0, self.0.1)
    }
}

impl std::error::Error for ReadError {}

/// serde's messages, kept in words a JavaScript user knows (`expected a number, got string`),
/// and written without serde's `Unexpected` display: it formats floats with Rust's float
/// formatting, which is ~18 KB of the `.wasm` on its own.
impl de::Error for ReadError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ReadError::new(msg.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        ReadError::new(format!("expected {expected}, got {}", js_kind(&unexpected)))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        ReadError::new(format!("expected {expected}, got {}", js_kind(&unexpected)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        ReadError::at(
            field.to_owned(),
            one_of("unknown key; expected one of: ", expected),
        )
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        ReadError::new(one_of("must be one of: ", expected))
    }

    fn missing_field(field: &'static str) -> Self {
        ReadError::at(field.to_owned(), format!("missing field `{field}`"))
    }
}

/// `what` followed by `names`, comma-separated.
fn one_of(what: &str, names: &[&str]) -> String {
    let mut reason = String::from(what);
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            reason.push_str(", ");
        }
        reason.push_str(name);
    }
    reason
}

/// What JavaScript calls the kind of value serde found.
fn js_kind(unexpected: &Unexpected<'_>) -> &'static str {
    match unexpected {
        Unexpected::Bool(_) => "boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) | Unexpected::Float(_) => "number",
        Unexpected::Char(_) | Unexpected::Str(_) => "string",
        Unexpected::Unit | Unexpected::Option => "null",
        Unexpected::Seq => "an array",
        Unexpected::Map | Unexpected::StructVariant => "object",
        _ => "another kind of value",
    }
}

/// Reads `T` from `value` through the catching copy; `undefined` and `null` read as `{}` (every
/// field absent).
pub(crate) fn read<T: DeserializeOwned>(value: &JsValue) -> Result<T, ReadError> {
    let value = plain(value).map_err(ReadError::new)?;
    read_plain(value)
}

/// [`read`] for a value that is already a catching copy (an element of a copied array).
pub(crate) fn read_plain<T: DeserializeOwned>(value: JsValue) -> Result<T, ReadError> {
    let value = if value.is_null_or_undefined() {
        Object::new().into()
    } else {
        value
    };
    T::deserialize(Value(value))
}

/// A plain JS value as a serde deserializer.
struct Value(JsValue);

impl Value {
    #[inline(never)]
    fn is_plain_object(&self) -> bool {
        self.0.is_object() && !is_array(&self.0)
    }

    /// An object's own keys and values, for serde to read as a map or a struct.
    #[inline(never)]
    fn entries(self) -> Result<Entries, ReadError> {
        if !self.is_plain_object() {
            return Err(wrong("must be a plain object", &self.0));
        }
        let keys = Object::keys(self.0.unchecked_ref::<Object>());
        Ok(Entries {
            object: self.0,
            keys,
            next: 0,
        })
    }
}

/// The error for a value of the wrong kind.
#[cold]
#[inline(never)]
fn wrong(what: &str, got: &JsValue) -> ReadError {
    ReadError::new(format!("{what}, got {}", type_name(got)))
}

impl<'de> de::Deserializer<'de> for Value {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        if self.0.is_null_or_undefined() {
            visitor.visit_unit()
        } else if let Some(b) = self.0.as_bool() {
            visitor.visit_bool(b)
        } else if let Some(n) = self.0.as_f64() {
            visitor.visit_f64(n)
        } else if let Some(s) = self.0.as_string() {
            visitor.visit_string(s)
        } else if is_array(&self.0) {
            self.deserialize_seq(visitor)
        } else {
            visitor.visit_map(self.entries()?)
        }
    }

    #[inline(never)]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0.as_bool() {
            Some(b) => visitor.visit_bool(b),
            None => Err(wrong("expected a boolean", &self.0)),
        }
    }

    #[inline(never)]
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0.as_f64() {
            Some(n) => visitor.visit_f64(n),
            None => Err(wrong("expected a number", &self.0)),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_f64(visitor)
    }

    #[inline(never)]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0.as_string() {
            Some(s) => visitor.visit_string(s),
            None => Err(wrong("expected a string", &self.0)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_string(visitor)
    }

    #[inline(never)]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        if self.0.is_null_or_undefined() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    #[inline(never)]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        if !is_array(&self.0) {
            return Err(wrong("expected an array", &self.0));
        }
        visitor.visit_seq(Elements {
            array: self.0.unchecked_into(),
            next: 0,
        })
    }

    #[inline(never)]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_map(self.entries()?)
    }

    #[inline(never)]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_map(self.entries()?)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_seq(visitor)
    }

    /// An enum of unit variants, by name (`"high"`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        match self.0.as_string() {
            Some(s) => visitor.visit_enum(s.into_deserializer()),
            None => Err(wrong("expected a string", &self.0)),
        }
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char bytes byte_buf unit unit_struct
        identifier
    }
}

/// An object's own enumerable keys, in order, with their values.
struct Entries {
    object: JsValue,
    keys: Array,
    next: u32,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ReadError> {
        // An unknown key names itself (`ReadError::unknown_field`).
        match self.next_key() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    #[inline(never)]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ReadError> {
        let value = self.next_value();
        seed.deserialize(value).map_err(|e| self.under_last_key(e))
    }
}

impl Entries {
    /// The current key, if any is left.
    #[inline(never)]
    fn next_key(&mut self) -> Option<String> {
        (self.next < self.keys.length())
            .then(|| self.keys.get(self.next).as_string().unwrap_or_default())
    }

    /// The current key's value; moves on.
    #[inline(never)]
    fn next_value(&mut self) -> Value {
        let key = self.keys.get(self.next);
        self.next += 1;
        Value(js_sys::Reflect::get(&self.object, &key).unwrap_or(JsValue::UNDEFINED))
    }

    /// `error` as seen from this object, under the key last read.
    #[cold]
    #[inline(never)]
    fn under_last_key(&self, error: ReadError) -> ReadError {
        error.under_key(&self.keys.get(self.next.saturating_sub(1)))
    }
}

/// An array's elements, in order.
struct Elements {
    array: Array,
    next: u32,
}

impl<'de> SeqAccess<'de> for Elements {
    type Error = ReadError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ReadError> {
        if self.next >= self.array.length() {
            return Ok(None);
        }
        let index = self.next;
        self.next += 1;
        seed.deserialize(Value(self.array.get(index)))
            .map(Some)
            .map_err(|e| e.under_index(index as usize))
    }
}

/// A `list` filter; unknown keys are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    /// Only tasks in this state (its JavaScript name).
    #[serde(default)]
    pub state: Option<String>,
    /// Only tasks of this agent.
    #[serde(default)]
    pub agent: Option<String>,
    /// Only tasks not settled (read from the open set, not every task held).
    #[serde(default)]
    pub open: bool,
}

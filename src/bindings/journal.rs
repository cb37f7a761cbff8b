//! The journal through the JavaScript API: export (whole or from a sequence number), the head,
//! verification, and the fencing claim.

use js_sys::{Object, Uint8Array};
use wasm_bindgen::prelude::*;

use super::api::hex;
use super::convert::{set, to_js};
use super::{FromSeq, HeadObject, JsEngine, fence_out, fenced, js};
use crate::error::Error;

#[wasm_bindgen(js_class = Engine)]
impl JsEngine {
    /// The journal's frames with `seq ≥ fromSeq` (default: all kept; the engine keeps its
    /// records from the last checkpoint on, and an export from an older seq starts there).
    #[wasm_bindgen(js_name = journalExport)]
    #[allow(non_snake_case)]
    pub fn journal_export(&self, fromSeq: Option<FromSeq>) -> Result<Uint8Array, JsValue> {
        self.live()?;
        let from_seq: JsValue = fromSeq.map_or(JsValue::UNDEFINED, Into::into);
        let from = match from_seq.as_f64() {
            None if from_seq.is_undefined() => 0,
            Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 => n as u64,
            _ => {
                return Err(to_js(&Error::input(
                    "fromSeq",
                    "must be a whole number ≥ 0",
                )));
            }
        };
        // Copied into the JS array piece by piece: no second copy of the journal in wasm memory.
        let o = self.inner.core.borrow();
        let out = Uint8Array::new_with_length(o.journal_export_len(from) as u32);
        let mut at = 0u32;
        o.export_journal(from, |piece| {
            let end = at + piece.len() as u32;
            out.subarray(at, end).copy_from(piece);
            at = end;
        });
        Ok(out)
    }

    /// `(seq, hash)` of the last journal record.
    #[wasm_bindgen(js_name = journalHead)]
    pub fn journal_head(&self) -> Result<HeadObject, JsValue> {
        self.live()?;
        let o = self.inner.core.borrow();
        let head = o.journal_head();
        let obj = Object::new();
        set(&obj, "seq", &(head.seq as f64).into());
        set(&obj, "hash", &hex(&head.hash).into());
        set(&obj, "epoch", &(o.epoch() as f64).into());
        Ok(obj.unchecked_into())
    }

    /// Tells the engine that an engine restored from its journal holds fencing epoch `epoch`
    /// (the host learned it, e.g. from the head a newer process keeps). An epoch above this
    /// engine's fences it out: it no longer acts (see the README's fencing rule). Returns whether
    /// this engine is fenced. `INVALID_INPUT` unless `epoch` is a whole number ≥ 0.
    pub fn fence(&self, epoch: JsValue) -> Result<bool, JsValue> {
        self.live()?;
        let epoch = epoch
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0 && n.fract() == 0.0 && *n <= 9.0e15)
            .ok_or_else(|| to_js(&Error::input("epoch", "must be a whole number ≥ 0")))?;
        self.inner.fence.borrow().claim(epoch as u64);
        let fenced = fenced(&self.inner);
        if let Err(e) = &fenced {
            fence_out(&self.inner, e);
        }
        Ok(fenced.is_err())
    }

    /// Re-verifies the journal kept in memory (every hash, from its anchor to the head). Returns
    /// true or throws `JOURNAL_INVALID`.
    pub fn verify(&self) -> Result<bool, JsValue> {
        self.live()?;
        // In place: no copy of the journal.
        js(self.inner.core.borrow().verify_journal())?;
        Ok(true)
    }
}

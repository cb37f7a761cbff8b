// Assertion helpers the JS suites share.
import assert from "node:assert/strict";

/** Asserts `fn` throws a ForemanError with `code` (and returns it). */
export function throwsCode(fn, code) {
  let caught;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof Error, `expected a throw with ${code}`);
  assert.equal(caught.name, "ForemanError");
  assert.equal(caught.code, code, caught.message);
  return caught;
}

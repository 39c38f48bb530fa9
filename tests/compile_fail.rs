//! Misuse of `#[unsync]` fails to compile with an error on the offending token that says
//! what to write instead. Each `tests/ui/*.stderr` is the exact message a user sees.
//! Regenerate after an intended change with `TRYBUILD=overwrite cargo test --test compile_fail`.
//!
//! `tests/ui_pass/*.rs` compile with `#![deny(warnings)]`: the rewrite adds no warning of its
//! own.

#[test]
fn misuse_is_a_clear_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui_pass/*.rs");
    cases.compile_fail("tests/ui/*.rs");
}

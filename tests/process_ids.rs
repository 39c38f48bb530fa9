//! Two `cpu_bound` functions with the same path, name and signature (each declared inside a
//! different function body of one module) cannot be told apart by a worker: calling either
//! fails with a clear error, instead of running the other's body.
//!
//! The crate forbids `unsafe_code`, as many users' crates do: what `#[unsync(cpu_bound)]`
//! emits (a link-time registry entry) must compile there.

#![forbid(unsafe_code)]

use unsync::{Error, Unfinished, unsync};

fn first() -> Unfinished<u8> {
    #[unsync(cpu_bound)]
    fn helper() -> u8 {
        1
    }
    helper()
}

fn second() -> Unfinished<u8> {
    #[unsync(cpu_bound)]
    fn helper() -> u8 {
        2
    }
    helper()
}

#[unsync(cpu_bound)]
fn distinct() -> u8 {
    3
}

#[test]
fn functions_a_worker_cannot_tell_apart_are_refused_clearly() {
    for call in [first, second] {
        match call().catch().result() {
            Err(Error::NotRegistered { task, detail }) => {
                assert_eq!(task, "process_ids::helper");
                assert!(detail.contains("rename one of them"), "{detail}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // The others are unaffected.
    assert_eq!(distinct().result(), 3);
}

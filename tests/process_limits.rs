//! Frame limits: arguments or a result over the frame limit fail that call with
//! `Error::TooLarge`, and the worker serves on. (A binary of its own: the limit is process-wide
//! configuration.)

use unsync::{Config, Error, Payload, unsync};

mod common;

#[unsync(cpu_bound)]
fn make_bytes(n: usize) -> Vec<u8> {
    vec![7; n]
}

#[unsync(cpu_bound)]
fn length(data: Vec<u8>) -> usize {
    data.len()
}

#[unsync(cpu_bound)]
fn pid() -> u32 {
    std::process::id()
}

#[test]
fn oversized_frames_fail_the_call_and_replace_the_worker() {
    Config::new()
        .max_frame_bytes(4096)
        .processes(1)
        .install()
        .unwrap();
    common::watchdog(common::LIMIT, || {
        assert_eq!(make_bytes(100).result().len(), 100);
        let worker = pid().result();
        // Too big to send: refused before it reaches the pipe.
        match length(vec![0; 10_000]).catch().result() {
            Err(Error::TooLarge {
                task,
                payload: Payload::Arguments,
                bytes,
                limit: 4096,
            }) => {
                assert_eq!(task, "process_limits::length");
                assert!(bytes > 10_000, "{bytes}");
            }
            other => panic!("{other:?}"),
        }
        // Too big a result: the worker refuses to send it, says how big it was, and serves on.
        let error = make_bytes(10_000).catch().result().unwrap_err();
        match &error {
            Error::TooLarge {
                task,
                payload: Payload::Result,
                bytes,
                limit: 4096,
            } => {
                assert_eq!(*task, "process_limits::make_bytes");
                assert!(*bytes > 10_000, "{bytes}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            error
                .to_string()
                .contains("more than the frame limit of 4096"),
            "{error}"
        );
        assert_eq!(pid().result(), worker, "the worker was replaced");
        assert_eq!(length(vec![1; 1000]).result(), 1000);
    });
}

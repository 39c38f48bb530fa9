//! Frame limits: an oversized frame on the worker pipe fails that call with `WorkerDied` and
//! the worker is replaced. (A binary of its own: the limit is process-wide configuration.)

use unsync::{Config, Error, unsync};

mod common;

#[unsync(cpu_bound)]
fn make_bytes(n: usize) -> Vec<u8> {
    vec![7; n]
}

#[unsync(cpu_bound)]
fn length(data: Vec<u8>) -> usize {
    data.len()
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
        // Too big to send: refused before it reaches the pipe.
        match length(vec![0; 10_000]).catch().result() {
            Err(Error::WorkerDied { detail, .. }) => {
                assert!(
                    detail.contains("more than the frame limit of 4096"),
                    "{detail}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Too big a result: the parent refuses the frame and replaces the worker.
        match make_bytes(10_000).catch().result() {
            Err(Error::WorkerDied { detail, .. }) => {
                assert!(detail.contains("exceeds the limit of 4096"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(length(vec![1; 1000]).result(), 1000);
    });
}

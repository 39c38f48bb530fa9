//! Large payloads: on Linux, blocks of 64 KiB and more cross through shared memory instead of
//! the pipe (elsewhere the pipe carries them, and these tests check the same results). Every
//! size arrives intact, in arguments and in results, one call at a time or many at once; a
//! vector-to-vector call copies its result into its argument's vector; a worker that dies with
//! blocks in flight costs only its call; and a worker can neither shrink the memory it shares
//! with the parent nor write the arguments of other calls.

use unsync::{Config, Error, Payload, unsync};

mod common;

/// The frame limit of these tests: 32 MiB, so that the biggest payloads exceed it.
const LIMIT_BYTES: usize = 32 << 20;

/// Every test starts here: one configuration for the whole binary.
fn configured() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        Config::new()
            .max_frame_bytes(LIMIT_BYTES)
            .processes(2)
            .install()
            .unwrap();
    });
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

#[unsync(cpu_bound)]
fn echo(data: Vec<u8>) -> Vec<u8> {
    data
}

#[unsync(cpu_bound)]
fn make(n: usize, seed: u8) -> Vec<u8> {
    pattern(n, seed)
}

#[unsync(cpu_bound)]
fn axpy(x: Vec<f64>, a: f64, y: Vec<f64>) -> Vec<f64> {
    x.iter().zip(&y).map(|(x, y)| a * x + y).collect()
}

#[unsync(cpu_bound)]
fn resize(mut data: Vec<u8>, len: usize) -> Vec<u8> {
    data.resize(len, 7);
    data
}

/// A type of the program's own, with a large field marked for the bulk path.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Samples {
    rate: u32,
    #[serde(with = "unsync::bulk")]
    values: Vec<f32>,
}

#[unsync(cpu_bound)]
fn halve(samples: Samples) -> Samples {
    let values = samples.values.iter().map(|v| v / 2.0).collect();
    Samples { values, ..samples }
}

#[unsync(cpu_bound)]
fn die_with(data: Vec<u8>) -> usize {
    if data.len() > 1 {
        std::process::abort();
    }
    data.len()
}

/// A function from a vector to a vector (its call keeps the argument for the result) that
/// panics (`how` 0) or aborts its worker (1) instead.
#[unsync(cpu_bound)]
fn fail_instead(data: Vec<u8>, how: u8) -> Vec<u8> {
    match how {
        0 => panic!("no result for {} bytes", data.len()),
        1 => std::process::abort(),
        _ => data,
    }
}

/// Sizes on both sides of the shared-memory threshold (64 KiB), up to 16 MiB.
const SIZES: [usize; 8] = [
    0,
    1,
    65_535,
    65_536,
    65_537,
    1 << 20,
    3 << 20,
    (16 << 20) + 3,
];

#[test]
fn every_size_round_trips_intact() {
    configured();
    common::watchdog(common::LIMIT, || {
        for (i, &n) in SIZES.iter().enumerate() {
            let data = pattern(n, i as u8);
            assert!(echo(data.clone()).result() == data, "echo of {n} bytes");
            assert!(make(n, i as u8).result() == data, "result of {n} bytes");
        }
    });
}

#[test]
fn numbers_in_several_blocks_of_one_call() {
    configured();
    common::watchdog(common::LIMIT, || {
        let n = 300_000;
        let x: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
        let y: Vec<f64> = (0..n).map(|i| -(i as f64)).collect();
        let z = axpy(x.clone(), 4.0, y.clone()).result();
        assert_eq!(z.len(), n);
        assert!(z.iter().enumerate().all(|(i, &v)| v == i as f64));
    });
}

#[test]
fn many_calls_at_once_keep_their_own_blocks() {
    configured();
    common::watchdog(common::LIMIT, || {
        for round in 0..3_u8 {
            let inputs: Vec<Vec<u8>> = (0..24)
                .map(|i| pattern(100_000 + i * 4096, i as u8 ^ round))
                .collect();
            let echoes: Vec<_> = inputs.iter().map(|d| echo(d.clone())).collect();
            let made: Vec<_> = (0..24)
                .map(|i| make(100_000 + i * 4096, i as u8 ^ round))
                .collect();
            for ((input, echoed), made) in inputs.iter().zip(echoes).zip(made) {
                let (echoed, made) = (echoed.result(), made.result());
                assert!(&echoed == input, "an echo came back changed");
                assert!(&made == input, "a result came back changed");
            }
        }
    });
}

#[test]
fn a_bulk_field_of_a_programs_own_type_round_trips() {
    configured();
    common::watchdog(common::LIMIT, || {
        let values: Vec<f32> = (0..1_000_000).map(|i| i as f32).collect();
        let halved = halve(Samples {
            rate: 48_000,
            values: values.clone(),
        })
        .result();
        assert_eq!(halved.rate, 48_000);
        assert!(
            halved
                .values
                .iter()
                .zip(&values)
                .all(|(h, v)| *h == v / 2.0)
        );
    });
}

#[test]
fn a_worker_that_dies_with_blocks_in_flight_costs_only_its_call() {
    configured();
    common::watchdog(common::LIMIT, || {
        let doomed = die_with(pattern(2 << 20, 1));
        let others: Vec<_> = (0..8).map(|i| echo(pattern(1 << 20, i))).collect();
        assert!(matches!(
            doomed.catch().result(),
            Err(Error::WorkerDied { .. })
        ));
        for (i, other) in others.into_iter().enumerate() {
            assert!(other.result() == pattern(1 << 20, i as u8));
        }
        assert_eq!(die_with(vec![1]).result(), 1);
    });
}

#[test]
fn a_call_that_keeps_its_argument_and_fails_costs_only_that_call() {
    configured();
    common::watchdog(common::LIMIT, || {
        let panicked = fail_instead(pattern(8 << 20, 2), 0).catch().result();
        assert!(
            matches!(&panicked, Err(Error::Panicked { message, .. }) if message == "no result for 8388608 bytes"),
            "{panicked:?}"
        );
        let died = fail_instead(pattern(8 << 20, 3), 1).catch().result();
        assert!(matches!(died, Err(Error::WorkerDied { .. })), "{died:?}");
        for seed in 0..4 {
            let data = pattern(8 << 20, seed);
            assert!(fail_instead(data.clone(), 2).result() == data);
        }
    });
}

/// What a worker can do to the shared memory it was given (Linux): for each of its memfds,
/// its name and whether truncating it and writing to it worked.
#[cfg(all(target_os = "linux", not(unsync_portable)))]
#[unsync(cpu_bound)]
fn tamper() -> Vec<(String, bool, bool)> {
    use std::io::Write;
    let mut seen = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if !target.starts_with("/memfd:unsync-") {
            continue;
        }
        // Opened anew, for writing: what any code in the worker could do.
        let file = std::fs::OpenOptions::new().write(true).open(entry.path());
        let (truncated, written) = match file {
            Ok(mut file) => (file.set_len(0).is_ok(), file.write_all(b"scribble").is_ok()),
            Err(_) => (false, false),
        };
        seen.push((target, truncated, written));
    }
    seen.sort();
    seen
}

/// Bytes of memory the parent's shared memory files named `unsync-<name>` hold (Linux).
#[cfg(all(target_os = "linux", not(unsync_portable)))]
fn shared_bytes(name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_it = std::fs::read_link(entry.path()).is_ok_and(|t| {
            t.to_string_lossy()
                .starts_with(&format!("/memfd:unsync-{name} "))
        });
        if let (true, Ok(meta)) = (is_it, std::fs::metadata(entry.path())) {
            bytes += meta.blocks() * 512;
        }
    }
    bytes
}

#[cfg(all(target_os = "linux", not(unsync_portable)))]
#[test]
fn large_blocks_cross_through_shared_memory() {
    configured();
    common::watchdog(common::LIMIT, || {
        let data = pattern(4 << 20, 5);
        assert!(echo(data.clone()).result() == data);
        assert!(shared_bytes("arguments") >= 4 << 20);
        assert!(shared_bytes("results") >= 4 << 20);
    });
}

/// `echo` and `axpy` map a vector to a vector of its type: a call keeps its (first such)
/// argument's vector, when large, and copies its result into it instead of into fresh memory.
#[cfg(all(target_os = "linux", not(unsync_portable)))]
#[test]
fn a_large_result_is_copied_into_its_argument_vector() {
    configured();
    common::watchdog(common::LIMIT, || {
        let data = pattern(8 << 20, 9);
        let (expected, address) = (data.clone(), data.as_ptr());
        let echoed = echo(data).result();
        assert_eq!(echoed.as_ptr(), address, "the argument's vector");
        assert!(echoed == expected, "holding exactly the result");

        let x: Vec<f64> = (0..1 << 20).map(f64::from).collect();
        let y: Vec<f64> = (0..1 << 20).map(|i| -f64::from(i)).collect();
        let address = x.as_ptr();
        let z = axpy(x, 2.0, y).result();
        assert_eq!(z.as_ptr(), address, "the first argument's vector");
        assert!(z.iter().enumerate().all(|(i, &v)| v == i as f64));

        // Used for a result it has room for, and no more than twice as large (the vector goes
        // to the caller, spare room and all).
        for (to, reused) in [(16 << 20, false), (5 << 20, true), (3 << 20, false)] {
            let data = pattern(8 << 20, 4);
            let address = data.as_ptr();
            let mut expected = data.clone();
            expected.resize(to, 7);
            let resized = resize(data, to).result();
            assert_eq!(resized.as_ptr() == address, reused, "8 MiB to {to} bytes");
            assert!(resized == expected, "8 MiB to {to} bytes");
        }
        // Small vectors are not kept (the allocator reuses their memory anyway).
        let small = pattern(100_000, 3);
        assert!(echo(small.clone()).result() == small);
    });
}

#[cfg(all(target_os = "linux", not(unsync_portable)))]
#[test]
fn a_worker_cannot_shrink_shared_memory_nor_write_the_arguments() {
    configured();
    common::watchdog(common::LIMIT, || {
        let seen = tamper().result();
        let names: Vec<&str> = seen.iter().map(|(name, ..)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "/memfd:unsync-arguments (deleted)",
                "/memfd:unsync-results (deleted)"
            ]
        );
        assert!(seen.iter().all(|&(_, truncated, _)| !truncated), "{seen:?}");
        assert!(!seen[0].2, "the worker wrote the arguments arena");
        // And shared memory still works.
        let data = pattern(1 << 20, 9);
        assert!(echo(data.clone()).result() == data);
    });
}

#[test]
fn the_frame_limit_counts_blocks_in_shared_memory() {
    configured();
    common::watchdog(common::LIMIT, || {
        let over = LIMIT_BYTES + (1 << 20);
        match echo(vec![0; over]).catch().result() {
            Err(Error::TooLarge {
                payload: Payload::Arguments,
                bytes,
                limit: LIMIT_BYTES,
                ..
            }) => assert!(bytes > over, "{bytes}"),
            other => panic!("{other:?}"),
        }
        match make(over, 0).catch().result() {
            Err(Error::TooLarge {
                payload: Payload::Result,
                bytes,
                limit: LIMIT_BYTES,
                ..
            }) => assert!(bytes > over, "{bytes}"),
            other => panic!("{other:?}"),
        }
        // Just under the limit: it crosses.
        let under = LIMIT_BYTES - 1024;
        assert_eq!(make(under, 3).result().len(), under);
    });
}

/// Where the fds 3 and up of a process started here lead (Linux): `ls` run in place of `sh`
/// lists its own.
#[cfg(target_os = "linux")]
fn inherited_by_a_child() -> Vec<String> {
    let listing = std::process::Command::new("sh")
        .args(["-c", "exec ls -l /proc/self/fd"])
        .output()
        .expect("sh and ls run");
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|line| {
            let (left, target) = line.split_once(" -> ")?;
            let fd: u32 = left.rsplit(' ').next()?.parse().ok()?;
            (fd > 2 && !target.starts_with("/proc/")).then(|| target.to_owned())
        })
        .collect()
}

/// What a process started by a `cpu_bound` body inherits beyond stdin, stdout and stderr.
#[cfg(target_os = "linux")]
#[unsync(cpu_bound)]
fn grandchild_fds() -> Vec<String> {
    inherited_by_a_child()
}

/// A worker's pipes and shared memory stay out of the processes its calls start (a grandchild
/// holding the response pipe would hide the worker's death from the pool): a grandchild
/// inherits nothing that a child of this process would not (what the test harness left open).
#[cfg(target_os = "linux")]
#[test]
fn processes_started_by_a_call_inherit_none_of_the_workers_fds() {
    configured();
    common::watchdog(common::LIMIT, || {
        let from_here = inherited_by_a_child();
        let from_a_call = grandchild_fds().result();
        let extra: Vec<_> = from_a_call
            .iter()
            .filter(|t| !from_here.contains(t))
            .collect();
        assert!(
            extra.is_empty(),
            "{extra:?} (a child of the caller has {from_here:?})"
        );
    });
}

/// Start a long-lived grandchild (its pid written to `pid_file`), then die.
#[cfg(target_os = "linux")]
#[unsync(cpu_bound)]
fn abort_leaving_a_grandchild(pid_file: String) -> u32 {
    let child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("sleep starts");
    std::fs::write(pid_file, child.id().to_string()).expect("the pid is written");
    std::process::abort();
}

/// Before the worker's fds were kept from its calls' processes, this death was seen only when
/// the grandchild exited (it held the response pipe open): 20 s for a `sleep 20`.
#[cfg(target_os = "linux")]
#[test]
fn a_worker_that_dies_leaving_a_grandchild_is_seen_dead_at_once() {
    configured();
    common::watchdog(common::LIMIT, || {
        let pid_file =
            std::env::temp_dir().join(format!("unsync-grandchild-{}", std::process::id()));
        let started = std::time::Instant::now();
        let outcome = abort_leaving_a_grandchild(pid_file.to_string_lossy().into_owned())
            .catch()
            .result();
        let seen_after = started.elapsed();
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            let _ = std::fs::remove_file(&pid_file);
        }
        assert!(
            matches!(outcome, Err(Error::WorkerDied { .. })),
            "{outcome:?}"
        );
        // The grandchild lives 60 s: anything well below means the pipe's end was seen.
        assert!(
            seen_after < std::time::Duration::from_secs(30),
            "{seen_after:?}"
        );
    });
}

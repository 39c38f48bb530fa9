//! The parent's handling of a worker's answers: frames read, decoded, settled into a value or
//! an error for the call (see `unsync_core::__fuzz::response`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peak = unsync_fuzz::peak_during(|| unsync_core::__fuzz::response(data));
    assert!(peak <= unsync_fuzz::allowed(data), "{peak} bytes");
});

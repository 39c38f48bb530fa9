//! The frame reader, blocking and non-blocking, over arbitrary bytes and settings (see
//! `unsync_core::__fuzz::frame_decoder`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peak = unsync_fuzz::peak_during(|| unsync_core::__fuzz::frame_decoder(data));
    // Two readers of at most 64 KiB each (the check's limit is a u16), plus copies of frames.
    assert!(peak <= (256 << 10) + 8 * data.len(), "{peak} bytes");
});

//! Bad input on the worker pipe: checks shared by the proptests below and the `cargo fuzz`
//! targets in `fuzz/` (through `unsync::__fuzz`, under the `fuzzing` feature).
//!
//! Each check takes arbitrary bytes, feeds them to one piece of code that reads what crosses
//! the pipe (the frame reader, the worker's request handler, the parent's handling of an
//! answer) and panics if an invariant breaks: a panic escaping that piece, a loop that does
//! not end, more memory held than the frame limit allows, a wrong or oversized answer.
//!
//! The checks drive the same `pub(crate)` functions the pool and the worker use (`protocol`,
//! `codec`, `call`, `worker::handle_request`, `worker_stream::serve_stream`), on the sample
//! functions of `samples`.

// The samples are `linkme` entries: `link_section` statics, which trip `unsafe_code`.
#[allow(unsafe_code)]
pub(crate) mod samples;
pub(crate) mod stream;

use std::collections::BTreeMap;

use super::call::{call_outcome, decode_result};
use super::codec::{Bulk, decode, encode};
use super::protocol::{self, FrameReader, Message, PREFIX, body_len};
use super::registry;
use super::worker::handle_request;
use super::worker_stream::{Request, Stop, serve_stream};
use crate::error::{Error, Payload};
use samples::ADD;
use stream::{Ending, Trickle, read_like_the_pool};

/// Five bytes of settings (the reader's limit, its initial buffer, the size of a read and how
/// many reads until the source would block), then the stream itself.
///
/// The stream is read twice, blocking (as a worker reads) and non-blocking in chunks (as the
/// parent reads): both must yield the same frames and end the same way; frames decode
/// without panicking and re-encode to an equal message; the buffer never exceeds its initial
/// size or one frame at the limit.
pub fn frame_decoder(data: &[u8]) {
    let Some((&[max_lo, max_hi, capacity, chunk, burst], stream)) = data.split_first_chunk::<5>()
    else {
        return;
    };
    let max = usize::from(u16::from_le_bytes([max_lo, max_hi]));
    let capacity = usize::from(capacity);
    let chunk = usize::from(chunk) + 1;
    let burst = usize::from(burst % 4);
    let bound = capacity.max(PREFIX + max);

    let mut blocking = FrameReader::with_capacity(stream, max, capacity);
    let mut frames = Vec::new();
    let ending = loop {
        match blocking.next_frame() {
            Ok(Some(body)) => frames.push(body.to_vec()),
            Ok(None) => break Ending::Clean,
            Err(e) => break Ending::from(e),
        }
        assert!(
            frames.len() <= stream.len() / PREFIX,
            "more frames than prefixes"
        );
    };
    assert!(
        blocking.allocated() <= bound,
        "{} > {bound}",
        blocking.allocated()
    );

    let mut trickle = FrameReader::with_capacity(Trickle::new(stream, chunk, burst), max, capacity);
    let (chunked, chunked_ending) = read_like_the_pool(&mut trickle, stream.len());
    assert!(
        trickle.allocated() <= bound,
        "{} > {bound}",
        trickle.allocated()
    );
    assert_eq!(frames, chunked, "blocking and non-blocking reads differ");
    assert_eq!(ending, chunked_ending);

    for body in &frames {
        assert!(body.len() <= max);
        if let Ok(message) = Message::decode(body) {
            let mut again = Vec::new();
            message.encode(&mut again);
            assert_eq!(body_len(&again), again.len() - PREFIX);
            assert_eq!(Message::decode(&again[PREFIX..]).ok(), Some(message));
        }
    }
}

/// The first byte chooses the request: odd, a call of the registered function it picks
/// (`byte >> 2`, modulo their number) with the rest as argument bytes, as a `STREAM` when bit 1
/// is set too; even, the rest is the whole frame body. See [`check_request`] and
/// [`check_stream`].
pub fn worker_request(data: &[u8]) {
    let body = match data.split_first() {
        Some((&selector, args)) if selector & 1 == 1 => {
            let index = usize::from(selector >> 2) % registry::count();
            let function = registry::entries()
                .nth(index)
                .expect("index below the count");
            if selector & 2 == 2 {
                stream_body(
                    u64::from(selector),
                    function.key,
                    u32::from(selector >> 2),
                    args,
                )
            } else {
                call_body(u64::from(selector), function.key, args)
            }
        }
        Some((_, body)) => body.to_vec(),
        None => Vec::new(),
    };
    if matches!(Message::decode(&body), Ok(Message::Stream { .. })) {
        check_stream(&body, LIMIT);
    } else {
        check_request(&body, LIMIT);
    }
}

/// The body of a stream frame.
pub(crate) fn stream_body(id: u64, key: u64, credit: u32, args: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    Message::Stream {
        id,
        key,
        level: 0,
        credit,
        args,
    }
    .encode(&mut frame);
    frame.split_off(PREFIX)
}

/// Credit the check grants a stream after its first (at most [`MAX_FIRST_CREDIT`]), in
/// frames of [`GRANT`] items: an endless sample stream then stops, as when its parent goes.
const GRANTS: u32 = 3;
const GRANT: u32 = 16;
const MAX_FIRST_CREDIT: u32 = 64;

/// Drive one `STREAM` request (its credit cut to [`MAX_FIRST_CREDIT`]) as the worker does,
/// with [`GRANTS`] more credit frames and then a closed pipe: the worker writes only `ITEMS`
/// frames of that stream, each within `max_frame`, never more items than it was granted,
/// then exactly one answer to it, unless it ran out of credit and stopped (the closed pipe).
pub(crate) fn check_stream(body: &[u8], max_frame: usize) {
    let Ok(Message::Stream {
        id,
        key,
        level,
        credit,
        args,
    }) = Message::decode(body)
    else {
        panic!("not a stream frame");
    };
    let credit = credit % (MAX_FIRST_CREDIT + 1);
    let mut grants = Vec::new();
    for _ in 0..GRANTS {
        Message::Credit { id, items: GRANT }.encode(&mut grants);
    }
    let mut requests = FrameReader::new(&grants[..], LIMIT);
    let mut out = Vec::new();
    let request = Request {
        id,
        key,
        level,
        credit,
        args,
    };
    let served = serve_stream(&mut requests, &mut out, request, max_frame);
    let mut reader = FrameReader::new(&out[..], LIMIT.max(max_frame));
    let mut items = 0_u64;
    let mut answered = false;
    while let Some(frame) = reader.next_frame().expect("the worker writes whole frames") {
        assert!(!answered, "a frame after the stream's answer");
        match Message::decode(frame).expect("the worker writes frames that decode") {
            Message::Items {
                id: of,
                count,
                items: bytes,
            } => {
                assert_eq!(of, id);
                assert!(frame.len() <= max_frame, "an items frame over the limit");
                assert_eq!(protocol::items(bytes).count(), count as usize);
                items += u64::from(count);
            }
            Message::Returned { id: of, .. }
            | Message::Panicked { id: of, .. }
            | Message::Failed { id: of, .. }
            | Message::Oversized { id: of, .. } => {
                assert_eq!(of, id);
                answered = true;
            }
            other => panic!("a stream wrote {other:?}"),
        }
    }
    assert!(
        items <= u64::from(credit + GRANTS * GRANT),
        "{items} items sent on credit for {}",
        credit + GRANTS * GRANT
    );
    match served {
        Ok(()) => assert!(answered, "a stream ended without its answer"),
        Err(Stop::ParentGone) => {
            assert!(!answered);
            assert_eq!(
                items,
                u64::from(credit + GRANTS * GRANT),
                "stopped with credit left"
            );
        }
        Err(Stop::Broken(why)) => panic!("a stream broke on valid credit: {why}"),
    }
}

/// The frame limit of the checks.
const LIMIT: usize = 1 << 20;

/// Hand one request body to the worker's handler, with frames limited to `max_frame` bytes: a
/// call gets exactly one answer to that call, within the limit and not much longer than the
/// request; anything else is refused with nothing written. Then the handler must still answer
/// a plain call right.
pub(crate) fn check_request(body: &[u8], max_frame: usize) {
    let mut out = Vec::new();
    let handled = handle_request(body, &mut out, max_frame);
    if let Ok(Message::Call { id, .. }) = Message::decode(body) {
        assert!(handled.is_ok(), "a call was refused: {handled:?}");
        let answered = match only_frame(&out) {
            Message::Oversized { id, bytes } => {
                assert!(bytes > max_frame as u64, "{bytes} bytes called oversized");
                id
            }
            Message::Returned { id, .. }
            | Message::Panicked { id, .. }
            | Message::Failed { id, .. } => {
                assert!(body_len(&out) <= max_frame, "an answer over the limit");
                id
            }
            other => panic!("a call was answered with {other:?}"),
        };
        assert_eq!(answered, id);
        assert!(
            out.len() <= body.len() + 512,
            "an answer of {} bytes to a request of {}",
            out.len(),
            body.len()
        );
    } else {
        assert!(handled.is_err(), "a frame that is not a call was answered");
        assert!(out.is_empty());
    }
    let mut sum = Vec::new();
    encode(&(2_u64, 3_u64), &mut sum).unwrap();
    assert_eq!(
        call(ADD.key, &sum).map(|r| decode::<u64>(&r).unwrap()),
        Ok(5)
    );
}

/// The body of a call frame.
pub(crate) fn call_body(id: u64, key: u64, args: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    Message::Call {
        id,
        key,
        level: 0,
        args,
    }
    .encode(&mut frame);
    frame.split_off(PREFIX)
}

/// Run a call through the worker's handler: the result's bytes, or `"panicked: ..."`,
/// `"failed (<cause>): ..."` or `"oversized: <bytes>"`.
pub(crate) fn call(key: u64, args: &[u8]) -> Result<Vec<u8>, String> {
    call_limited(key, args, LIMIT)
}

/// [`call`], with frames limited to `max_frame` bytes.
pub(crate) fn call_limited(key: u64, args: &[u8], max_frame: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    handle_request(&call_body(7, key, args), &mut out, max_frame).expect("a call frame");
    match only_frame(&out) {
        Message::Returned { id: 7, payload, .. } => Ok(payload.to_vec()),
        Message::Panicked { id: 7, message, .. } => Err(format!("panicked: {message}")),
        Message::Failed {
            id: 7,
            failure,
            message,
        } => Err(format!("failed ({failure:?}): {message}")),
        Message::Oversized { id: 7, bytes } => Err(format!("oversized: {bytes}")),
        other => panic!("not an answer to call 7: {other:?}"),
    }
}

/// The message in `out`, which must hold exactly one whole frame.
fn only_frame(out: &[u8]) -> Message<'_> {
    assert!(out.len() >= PREFIX && body_len(out) == out.len() - PREFIX);
    Message::decode(&out[PREFIX..]).expect("an answer that decodes")
}

/// The task name the parent-side checks settle calls for.
const TASK: &str = "fuzz::task";

/// A byte choosing the type results (and a stream's items) decode as, then a stream of frames
/// from a worker. Each answer is settled as the pool settles the call it answers, and each
/// item of an `ITEMS` frame as a stream's job does: a value or an error for that call, never
/// a panic.
pub fn response(data: &[u8]) {
    let Some((&kind, stream)) = data.split_first() else {
        return;
    };
    let mut reader = FrameReader::with_capacity(stream, 4096, 256);
    // The pool pairs an answer with a call; other frames, or an error, end the worker.
    while let Ok(Some(body)) = reader.next_frame() {
        let Ok(answer) = Message::decode(body) else {
            break;
        };
        let returned = match answer {
            // A stream's items, settled one by one as the stream's job does.
            Message::Items { items, .. } => {
                for item in protocol::items(items) {
                    settle(kind, item);
                }
                continue;
            }
            Message::Returned { .. } => true,
            Message::Panicked { .. } | Message::Failed { .. } | Message::Oversized { .. } => false,
            _ => break,
        };
        match call_outcome(TASK, answer, LIMIT) {
            Ok(payload) => {
                assert!(returned);
                settle(kind, payload);
            }
            Err(
                Error::Panicked { task, .. }
                | Error::NotRegistered { task, .. }
                | Error::Encoding { task, .. }
                | Error::TooLarge { task, .. },
            ) => {
                assert!(!returned);
                assert_eq!(task, TASK);
            }
            Err(other) => panic!("an answer settled as {other:?}"),
        }
    }
}

/// Decode a result as the type `kind` picks, as the pool does (with a results arena of 64 KiB
/// where shared memory is used, so that shared blocks at any offset are tried too).
fn settle(kind: u8, payload: &[u8]) {
    static RESULTS: std::sync::OnceLock<Option<super::shared::ResultsReader>> =
        std::sync::OnceLock::new();
    let results = RESULTS.get_or_init(|| super::shared::ResultsReader::create(64 << 10));
    let region = results.as_ref().map(super::shared::ResultsReader::region);
    super::shared::decoding_from(region, || settle_by_kind(kind, payload));
}

fn settle_by_kind(kind: u8, payload: &[u8]) {
    type Tuple = (u32, Option<String>, char);
    type Map = BTreeMap<String, Vec<u8>>;
    type Either = Result<(bool, i128), f32>;
    match kind % 8 {
        0 => settle_as::<u64, u64>(payload),
        1 => settle_as::<String, String>(payload),
        2 => settle_as::<Vec<String>, Vec<String>>(payload),
        3 => settle_as::<Bulk<Vec<f64>>, Vec<f64>>(payload),
        4 => settle_as::<Tuple, Tuple>(payload),
        5 => settle_as::<Map, Map>(payload),
        6 => settle_as::<Either, Either>(payload),
        _ => settle_as::<Bulk<Vec<u8>>, Vec<u8>>(payload),
    }
}

fn settle_as<W: serde::de::DeserializeOwned + Into<R>, R>(payload: &[u8]) {
    match decode_result::<W, R>(TASK, payload) {
        Ok(_) => {}
        Err(Error::Encoding {
            task,
            payload: Payload::Result,
            detail,
        }) => {
            assert_eq!(task, TASK);
            assert!(detail.contains("decoding it in this process"), "{detail}");
        }
        Err(other) => panic!("a result settled as {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;
    use crate::exec::process::protocol::{Failure, ITEMS_HEADER};
    use crate::exec::process::registry;
    use proptest::prelude::*;
    use serde::Serialize;

    fn args(value: &impl Serialize) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out).unwrap();
        out
    }

    #[test]
    fn calls_are_answered() {
        let five = call(ADD.key, &args(&(2_u64, 3_u64))).unwrap();
        assert_eq!(decode::<u64>(&five).unwrap(), 5);
        let joined = call(CONCAT.key, &args(&(vec!["un", "sync"],))).unwrap();
        assert_eq!(decode::<String>(&joined).unwrap(), "unsync");
        let sum = call(SUM.key, &args(&(Bulk(&vec![1.5_f64, 2.0]),))).unwrap();
        assert_eq!(decode::<f64>(&sum).unwrap(), 3.5);
        let echo = call(ECHO.key, &args(&(Bulk(&vec![1_u8, 2, 3]),))).unwrap();
        assert_eq!(decode::<Bulk<Vec<u8>>>(&echo).unwrap().0, [1, 2, 3]);
    }

    #[test]
    fn bad_calls_fail_and_other_frames_are_refused() {
        assert!(registry::lookup(0xdead).is_none());
        let unknown = call(0xdead, &[]).unwrap_err();
        assert!(
            unknown.starts_with("failed (NotRegistered): no such cpu_bound function"),
            "{unknown}"
        );
        let cut = call(ADD.key, &args(&(2_u64, 300_u64))[..2]).unwrap_err();
        assert!(cut.starts_with("failed (Arguments): "), "{cut}");
        let long = call(ADD.key, &[args(&(2_u64, 3_u64)), vec![0]].concat()).unwrap_err();
        assert!(long.starts_with("failed (Arguments): "), "{long}");
        assert!(long.contains("left over"), "{long}");

        let mut out = Vec::new();
        for body in [&[][..], &[0x12, 1, 2], &[0xff; 20]] {
            assert!(handle_request(body, &mut out, LIMIT).is_err());
        }
        let mut hello = Vec::new();
        Message::Hello {
            version: 1,
            fingerprint: 2,
            pid: 3,
        }
        .encode(&mut hello);
        assert!(handle_request(&hello[PREFIX..], &mut out, LIMIT).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn results_over_the_limit_or_that_do_not_encode_fail_their_call() {
        let bytes = args(&(Bulk(&vec![7_u8; 100]),));
        assert_eq!(call_limited(ECHO.key, &bytes, 1000), Ok(bytes.clone()));
        // The RETURNED body: kind, call id, run time, then the result.
        let body = 1 + 8 + 4 + bytes.len();
        assert_eq!(call_limited(ECHO.key, &bytes, body), Ok(bytes.clone()));
        assert_eq!(
            call_limited(ECHO.key, &bytes, body - 1),
            Err(format!("oversized: {body}"))
        );
        check_request(&call_body(1, ECHO.key, &bytes), body - 1);

        let refused = call(UNENCODABLE.key, &args(&(3_u8,))).unwrap_err();
        assert!(refused.starts_with("failed (Result): "), "{refused}");
    }

    /// A failure cause chosen by `n`.
    fn failure(n: u32) -> Failure {
        [Failure::NotRegistered, Failure::Arguments, Failure::Result][n as usize % 3]
    }

    #[test]
    fn a_panic_is_an_answer_and_the_handler_goes_on() {
        assert_eq!(call(PANICS.key, &[0]), Err("panicked: zero".into()));
        assert_eq!(call(PANICS.key, &[3]), Ok(vec![3]));
    }

    #[test]
    fn a_panic_payload_that_panics_when_dropped_stays_in() {
        let answer = call(BOMB.key, &[0]).unwrap_err();
        assert!(answer.starts_with("panicked: "), "{answer}");
        assert_eq!(call(BOMB.key, &[4]), Ok(vec![4]));
    }

    /// How a valid request or result is spoiled.
    #[derive(Debug, Clone)]
    enum Spoil {
        Not,
        Cut(prop::sample::Index),
        Flip(prop::sample::Index, u8),
        Append(Vec<u8>),
    }

    fn spoil() -> impl Strategy<Value = Spoil> {
        prop_oneof![
            Just(Spoil::Not),
            any::<prop::sample::Index>().prop_map(Spoil::Cut),
            (any::<prop::sample::Index>(), 1..=255_u8).prop_map(|(i, b)| Spoil::Flip(i, b)),
            prop::collection::vec(any::<u8>(), 1..16).prop_map(Spoil::Append),
        ]
    }

    impl Spoil {
        fn apply(&self, mut bytes: Vec<u8>) -> Vec<u8> {
            match self {
                Spoil::Not => {}
                Spoil::Cut(at) => bytes.truncate(at.index(bytes.len().max(1))),
                Spoil::Flip(at, bits) if !bytes.is_empty() => {
                    let at = at.index(bytes.len());
                    bytes[at] ^= bits;
                }
                Spoil::Flip(..) => {}
                Spoil::Append(tail) => bytes.extend_from_slice(tail),
            }
            bytes
        }
    }

    /// A call of one of the samples with valid arguments: its key, the arguments' bytes, the
    /// result's bytes.
    fn sample_call() -> impl Strategy<Value = (u64, Vec<u8>, Vec<u8>)> {
        let text = || prop::collection::vec(".{0,12}", 0..6);
        prop_oneof![
            any::<(u64, u64)>().prop_map(|(a, b)| (ADD.key, args(&(a, b)), args(&add(a, b)))),
            text().prop_map(|parts| (CONCAT.key, args(&(&parts,)), args(&concat(parts)))),
            prop::collection::vec(any::<f64>(), 0..40).prop_map(|values| (
                SUM.key,
                args(&(Bulk(&values),)),
                args(&sum(Bulk(values)))
            )),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|bytes| (
                ECHO.key,
                args(&(Bulk(&bytes),)),
                args(&echo(Bulk(bytes)))
            )),
            (
                prop::collection::vec(prop::collection::vec(any::<u32>(), 0..8), 0..8),
                prop::option::of(prop::collection::btree_map(".{0,8}", any::<i64>(), 0..6)),
                any::<Result<(bool, char), i16>>(),
            )
                .prop_map(|(rows, names, flag)| (
                    CENSUS.key,
                    args(&(&rows, &names, &flag)),
                    args(&census(rows, names, flag))
                )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn worker_request_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
            worker_request(&data);
        }

        /// Valid calls get their right answer; cut or lengthened arguments fail the call;
        /// flipped bits give any answer to that call. The handler goes on either way.
        #[test]
        fn spoiled_arguments_fail_only_their_call((key, valid, result) in sample_call(), spoil in spoil(), id: u64) {
            let sent = spoil.apply(valid.clone());
            check_request(&call_body(id, key, &sent), LIMIT);
            let answer = call(key, &sent);
            match spoil {
                Spoil::Not => prop_assert_eq!(answer, Ok(result)),
                Spoil::Cut(_) | Spoil::Append(_) if sent != valid => {
                    prop_assert!(answer.as_ref().is_err_and(|e| e.starts_with("failed (Arguments): ")), "{:?}", answer)
                }
                _ => {}
            }
        }

        #[test]
        fn unknown_functions_fail_their_call(key: u64, id: u64, data in prop::collection::vec(any::<u8>(), 0..32)) {
            prop_assume!(registry::lookup(key).is_none());
            check_request(&call_body(id, key, &data), LIMIT);
            prop_assert_eq!(call(key, &data), Err("failed (NotRegistered): no such cpu_bound function in the worker".into()));
        }

        /// Under any frame limit, a valid call is answered with its result or, when that would
        /// not fit, with the size it needed.
        #[test]
        fn small_limits_answer_oversized((key, valid, result) in sample_call(), limit in 0_usize..300) {
            check_request(&call_body(9, key, &valid), limit);
            match call_limited(key, &valid, limit) {
                Ok(answer) => prop_assert_eq!(answer, result),
                Err(e) => prop_assert_eq!(e, format!("oversized: {}", 1 + 8 + 4 + result.len())),
            }
        }

        /// Streams of every sample, with any first credit, spoiled or not: never more items
        /// than the credit, one answer at the end.
        #[test]
        fn streams_stay_within_their_credit(
            which in 0..3_u8,
            n in 0_u64..400,
            credit: u32,
            words in prop::collection::vec("[a-z]{0,6}", 0..100),
            spoil in spoil(),
            limit in prop_oneof![Just(LIMIT), (ITEMS_HEADER - PREFIX + 4)..200],
        ) {
            let (key, valid) = match which {
                0 => (COUNT_TO.key, args(&(n,))),
                1 => (PANICS_AT.key, args(&(n,))),
                _ => (WORDS.key, args(&(words.join(" "),))),
            };
            check_stream(&stream_body(5, key, credit, &spoil.apply(valid)), limit);
        }

        #[test]
        fn response_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
            response(&data);
        }

        /// Answers carrying valid or spoiled results of each type the check decodes as, and
        /// items frames carrying them as items.
        #[test]
        fn spoiled_results_fail_only_their_call(
            kind: u8,
            answers in prop::collection::vec((0..4_u8, any::<u64>(), any::<u32>(), sample_call(), spoil()), 1..6),
        ) {
            let mut stream = vec![kind];
            for (what, id, micros, (_, _, result), spoil) in &answers {
                let payload = spoil.apply(result.clone());
                let text = String::from_utf8_lossy(&payload);
                match what {
                    3 => {
                        let start = protocol::begin_items(&mut stream, *id);
                        protocol::push_item(&mut stream, &payload);
                        protocol::push_item(&mut stream, result);
                        protocol::end_items(&mut stream, start, 2);
                        continue;
                    }
                    0 => Message::Returned { id: *id, micros: *micros, shared: false, payload: &payload },
                    1 => Message::Panicked { id: *id, message: &text, location: &text, backtrace: "" },
                    _ => Message::Failed { id: *id, failure: failure(*micros), message: &text },
                }
                .encode(&mut stream);
            }
            response(&stream);
        }

        #[test]
        fn frame_decoder_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
            frame_decoder(&data);
        }

        /// Valid frames of every kind, spoiled, read under random settings.
        #[test]
        fn frame_decoder_on_spoiled_frames(
            settings in prop::array::uniform5(any::<u8>()),
            frames in prop::collection::vec((0..10_u8, any::<u64>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..40)), 0..8),
            spoil in spoil(),
        ) {
            let mut stream = Vec::new();
            for (kind, n, m, bytes) in &frames {
                let text = String::from_utf8_lossy(bytes);
                match kind {
                    0 => Message::Call { id: *n, key: !*n, level: 0, args: bytes },
                    1 => Message::Hello { version: *m, fingerprint: *n, pid: *m },
                    2 => Message::Refused { reason: &text },
                    3 => Message::Returned { id: *n, micros: *m, shared: *m % 2 == 0, payload: bytes },
                    4 => Message::Panicked { id: *n, message: &text, location: "", backtrace: &text },
                    5 => Message::Failed { id: *n, failure: failure(*m), message: &text },
                    6 => Message::Oversized { id: *n, bytes: u64::from(*m) },
                    7 => Message::Stream { id: *n, key: !*n, level: 1, credit: *m, args: bytes },
                    8 => Message::Credit { id: *n, items: *m },
                    _ => {
                        let start = protocol::begin_items(&mut stream, *n);
                        for item in bytes.chunks(3) {
                            protocol::push_item(&mut stream, item);
                        }
                        protocol::end_items(&mut stream, start, bytes.chunks(3).count() as u32);
                        continue;
                    }
                }
                .encode(&mut stream);
            }
            frame_decoder(&[&settings[..], &spoil.apply(stream)].concat());
        }
    }
}

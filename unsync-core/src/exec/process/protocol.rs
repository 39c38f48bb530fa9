//! The worker pipe protocol: length-prefixed frames, and the messages they carry.
//!
//! A frame is a little-endian `u32` body length, then the body: one kind byte and its fields.
//! Lengths above the configured maximum are refused before anything is allocated, and a
//! frame's buffer grows only as its bytes actually arrive, so a lying length costs nothing.
//! Nothing more is read while a whole frame waits to be taken, so the buffer never holds more
//! than its initial 64 KiB or one frame at the limit, however fast the other side writes.
//!
//! | kind | direction | fields |
//! |---|---|---|
//! | `CALL` | parent → worker | call id `u64`, function key `u64`, the most verbose `tracing` level the parent records `u8` (0: none, 1: ERROR ... 5: TRACE; plus [`SHARE_ANSWER`] and [`SPIN_AFTER`]), encoded arguments |
//! | `STREAM` | parent → worker | call id, function key, level `u8`, initial credit `u32` (items the worker may send), encoded arguments |
//! | `CREDIT` | parent → worker | call id, items `u32` the worker may send beyond what it was granted |
//! | `HELLO` | worker → parent | protocol version `u32`, build fingerprint `u64`, pid `u32` |
//! | `REFUSED` | worker → parent | why the worker will not serve this parent (UTF-8) |
//! | `RETURNED` | worker → parent | call id, microseconds the body ran `u32`, encoded result |
//! | `RETURNED_SHARED` | worker → parent | as `RETURNED`, but the result has blocks in the worker's results arena (see `shared`) |
//! | `PANICKED` | worker → parent | call id, panic message (UTF-8) |
//! | `FAILED` | worker → parent | call id, cause `u8` (see [`Failure`]), why the call could not run (UTF-8) |
//! | `OVERSIZED` | worker → parent | call id, body length `u64` of the result's frame, which was over the limit and not sent |
//! | `SPAN` | worker → parent | call id, span id `u64`, parent span id `u64` (0: the call's), level `u8`, name (sized UTF-8), fields `k=v ...` (UTF-8) |
//! | `EVENT` | worker → parent | call id, parent span id `u64` (0: the call's), level `u8`, target (sized UTF-8), fields (sized UTF-8), message (UTF-8) |
//! | `ITEMS` | worker → parent | call id, count `u32`, then each item's encoding after its `u32` length |
//!
//! `SPAN` and `EVENT` frames come before the answer to their call (see `worker_log`).
//!
//! A stream (`STREAM`) is answered by `ITEMS` frames, never carrying more items in all than the
//! credit granted so far (the `STREAM` frame's, plus every `CREDIT` frame's), then by one
//! answer as a call's: `RETURNED` (empty payload) after the last item, or `PANICKED`,
//! `FAILED`, `OVERSIZED` (see `worker_stream`). A worker ignores `CREDIT` frames of a stream
//! that has ended.

use std::io::{self, Read};
use std::ops::Range;

/// Bumped whenever a frame's layout changes.
pub(crate) const PROTOCOL_VERSION: u32 = 6;

/// Set in a `CALL` frame's level byte: the answer may keep blocks in the worker's results
/// arena (the parent reads them from there; see `shared`).
pub(crate) const SHARE_ANSWER: u8 = 0x80;
/// Set in a `CALL` frame's level byte: the caller waits spinning, so its worker may spin for
/// the next call too (see the worker's `wait_for_request`).
pub(crate) const SPIN_AFTER: u8 = 0x40;
/// The `tracing` level in a `CALL` frame's level byte, without the flags.
pub(crate) const LEVEL: u8 = !(SHARE_ANSWER | SPIN_AFTER);

const CALL: u8 = 1;
const STREAM: u8 = 2;
const CREDIT: u8 = 3;
const HELLO: u8 = 0x10;
const REFUSED: u8 = 0x11;
const RETURNED: u8 = 0x12;
const PANICKED: u8 = 0x13;
const FAILED: u8 = 0x14;
const OVERSIZED: u8 = 0x15;
const SPAN: u8 = 0x16;
const EVENT: u8 = 0x17;
const ITEMS: u8 = 0x18;
const RETURNED_SHARED: u8 = 0x19;

/// Bytes of the length prefix.
pub(crate) const PREFIX: usize = 4;

/// Most room made for one read while a frame's body arrives. The buffer also doubles (never
/// past the frame's end), so a lying length costs at most about twice the bytes that did
/// arrive, plus two steps.
const GROWTH_STEP: usize = 1 << 20;

/// One decoded frame body, borrowing from the reader's buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    Call {
        id: u64,
        key: u64,
        /// The most verbose `tracing` level the parent records (0: none, 1: ERROR ... 5: TRACE).
        level: u8,
        args: &'a [u8],
    },
    /// A streaming call: `credit` items may be sent before more is granted.
    Stream {
        id: u64,
        key: u64,
        level: u8,
        credit: u32,
        args: &'a [u8],
    },
    /// `items` more items of stream `id` may be sent.
    Credit {
        id: u64,
        items: u32,
    },
    /// `count` items of stream `id`, each sized (checked when decoded: see [`items`]).
    Items {
        id: u64,
        count: u32,
        items: &'a [u8],
    },
    Hello {
        version: u32,
        fingerprint: u64,
        pid: u32,
    },
    Refused {
        reason: &'a str,
    },
    Returned {
        id: u64,
        micros: u32,
        /// The payload has blocks in the worker's results arena (`RETURNED_SHARED`).
        shared: bool,
        payload: &'a [u8],
    },
    /// `location` and `backtrace` are empty when unknown.
    Panicked {
        id: u64,
        message: &'a str,
        location: &'a str,
        backtrace: &'a str,
    },
    Failed {
        id: u64,
        failure: Failure,
        message: &'a str,
    },
    Oversized {
        id: u64,
        bytes: u64,
    },
    /// A `tracing` span the call's body created (ids are the worker's, never 0).
    Span {
        id: u64,
        span: u64,
        parent: u64,
        level: u8,
        name: &'a str,
        fields: &'a str,
    },
    /// A `tracing` event the call's body recorded, in span `parent` (0: the call itself).
    Event {
        id: u64,
        parent: u64,
        level: u8,
        target: &'a str,
        fields: &'a str,
        message: &'a str,
    },
}

/// Append `text` after its `u32` length (cut at `u32::MAX` bytes).
fn sized_text(out: &mut Vec<u8>, text: &str) {
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&text.as_bytes()[..len as usize]);
}

/// Why a worker could not run a call (the cause byte of a `FAILED` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No function with the call's key in the worker's registry.
    NotRegistered = 1,
    /// The arguments did not decode.
    Arguments = 2,
    /// The result did not encode.
    Result = 3,
}

impl Failure {
    fn from_byte(byte: u8) -> Result<Failure, ProtocolError> {
        match byte {
            1 => Ok(Failure::NotRegistered),
            2 => Ok(Failure::Arguments),
            3 => Ok(Failure::Result),
            _ => Err(ProtocolError::Malformed("unknown failure cause")),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtocolError {
    #[error(
        "a frame of {len} bytes exceeds the limit of {max} bytes (raise it with `Config::max_frame_bytes` or UNSYNC_MAX_FRAME_BYTES)"
    )]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    #[error("the pipe closed in the middle of a frame")]
    Truncated,
    #[error("pipe error: {0}")]
    Io(#[from] io::Error),
}

impl Message<'_> {
    /// Append this message as one whole frame.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = begin_frame(out);
        match *self {
            Message::Call {
                id,
                key,
                level,
                args,
            } => {
                out.push(CALL);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&key.to_le_bytes());
                out.push(level);
                out.extend_from_slice(args);
            }
            Message::Stream {
                id,
                key,
                level,
                credit,
                args,
            } => {
                out.push(STREAM);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&key.to_le_bytes());
                out.push(level);
                out.extend_from_slice(&credit.to_le_bytes());
                out.extend_from_slice(args);
            }
            Message::Credit { id, items } => {
                out.push(CREDIT);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&items.to_le_bytes());
            }
            Message::Items { id, count, items } => {
                out.push(ITEMS);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
                out.extend_from_slice(items);
            }
            Message::Hello {
                version,
                fingerprint,
                pid,
            } => {
                out.push(HELLO);
                out.extend_from_slice(&version.to_le_bytes());
                out.extend_from_slice(&fingerprint.to_le_bytes());
                out.extend_from_slice(&pid.to_le_bytes());
            }
            Message::Refused { reason } => {
                out.push(REFUSED);
                out.extend_from_slice(reason.as_bytes());
            }
            Message::Returned {
                id,
                micros,
                shared,
                payload,
            } => {
                out.push(if shared { RETURNED_SHARED } else { RETURNED });
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&micros.to_le_bytes());
                out.extend_from_slice(payload);
            }
            Message::Panicked {
                id,
                message,
                location,
                backtrace,
            } => {
                out.push(PANICKED);
                out.extend_from_slice(&id.to_le_bytes());
                for text in [location, backtrace] {
                    sized_text(out, text);
                }
                out.extend_from_slice(message.as_bytes());
            }
            Message::Failed {
                id,
                failure,
                message,
            } => {
                out.push(FAILED);
                out.extend_from_slice(&id.to_le_bytes());
                out.push(failure as u8);
                out.extend_from_slice(message.as_bytes());
            }
            Message::Oversized { id, bytes } => {
                out.push(OVERSIZED);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&bytes.to_le_bytes());
            }
            Message::Span {
                id,
                span,
                parent,
                level,
                name,
                fields,
            } => {
                out.push(SPAN);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&span.to_le_bytes());
                out.extend_from_slice(&parent.to_le_bytes());
                out.push(level);
                sized_text(out, name);
                out.extend_from_slice(fields.as_bytes());
            }
            Message::Event {
                id,
                parent,
                level,
                target,
                fields,
                message,
            } => {
                out.push(EVENT);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&parent.to_le_bytes());
                out.push(level);
                sized_text(out, target);
                sized_text(out, fields);
                out.extend_from_slice(message.as_bytes());
            }
        }
        end_frame(out, start);
    }

    /// Decode a frame body (without its length prefix).
    pub(crate) fn decode(body: &[u8]) -> Result<Message<'_>, ProtocolError> {
        let (&kind, rest) = body
            .split_first()
            .ok_or(ProtocolError::Malformed("empty frame"))?;
        let mut fields = Fields(rest);
        let message = match kind {
            CALL => Message::Call {
                id: fields.u64()?,
                key: fields.u64()?,
                level: fields.u8()?,
                args: fields.rest(),
            },
            STREAM => Message::Stream {
                id: fields.u64()?,
                key: fields.u64()?,
                level: fields.u8()?,
                credit: fields.u32()?,
                args: fields.rest(),
            },
            CREDIT => Message::Credit {
                id: fields.u64()?,
                items: fields.u32()?,
            },
            ITEMS => {
                let id = fields.u64()?;
                let count = fields.u32()?;
                let items = fields.rest();
                if items_in(items)? != count {
                    return Err(ProtocolError::Malformed(
                        "an items frame holds another number of items than it says",
                    ));
                }
                Message::Items { id, count, items }
            }
            HELLO => Message::Hello {
                version: fields.u32()?,
                fingerprint: fields.u64()?,
                pid: fields.u32()?,
            },
            REFUSED => Message::Refused {
                reason: fields.text()?,
            },
            RETURNED | RETURNED_SHARED => Message::Returned {
                id: fields.u64()?,
                micros: fields.u32()?,
                shared: kind == RETURNED_SHARED,
                payload: fields.rest(),
            },
            PANICKED => Message::Panicked {
                id: fields.u64()?,
                location: fields.sized_text()?,
                backtrace: fields.sized_text()?,
                message: fields.text()?,
            },
            FAILED => Message::Failed {
                id: fields.u64()?,
                failure: Failure::from_byte(fields.u8()?)?,
                message: fields.text()?,
            },
            OVERSIZED => Message::Oversized {
                id: fields.u64()?,
                bytes: fields.u64()?,
            },
            SPAN => Message::Span {
                id: fields.u64()?,
                span: fields.u64()?,
                parent: fields.u64()?,
                level: fields.u8()?,
                name: fields.sized_text()?,
                fields: fields.text()?,
            },
            EVENT => Message::Event {
                id: fields.u64()?,
                parent: fields.u64()?,
                level: fields.u8()?,
                target: fields.sized_text()?,
                fields: fields.sized_text()?,
                message: fields.text()?,
            },
            _ => return Err(ProtocolError::Malformed("unknown frame kind")),
        };
        Ok(message)
    }
}

/// Append a `CALL` frame whose arguments `encode_args` appends in place (no copy).
pub(crate) fn encode_call<E>(
    out: &mut Vec<u8>,
    id: u64,
    key: u64,
    level: u8,
    encode_args: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let start = begin_frame(out);
    out.push(CALL);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&key.to_le_bytes());
    out.push(level);
    encode_args(out)?;
    end_frame(out, start);
    Ok(())
}

/// Append a `RETURNED` frame whose payload `run` appends in place, timing it. On failure,
/// `out` is left as it was.
pub(crate) fn encode_returned<E>(
    out: &mut Vec<u8>,
    id: u64,
    run: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let start = begin_frame(out);
    out.push(RETURNED);
    out.extend_from_slice(&id.to_le_bytes());
    let micros_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let began = std::time::Instant::now();
    if let Err(e) = run(out) {
        out.truncate(start);
        return Err(e);
    }
    let micros = u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX);
    out[micros_at..micros_at + 4].copy_from_slice(&micros.to_le_bytes());
    end_frame(out, start);
    Ok(())
}

/// Make the `RETURNED` frame that starts at `start` of `out` a `RETURNED_SHARED` one.
pub(crate) fn mark_shared(out: &mut [u8], start: usize) {
    debug_assert_eq!(out[start + PREFIX], RETURNED);
    out[start + PREFIX] = RETURNED_SHARED;
}

/// Append a `STREAM` frame whose arguments `encode_args` appends in place.
pub(crate) fn encode_stream<E>(
    out: &mut Vec<u8>,
    id: u64,
    key: u64,
    level: u8,
    credit: u32,
    encode_args: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let start = begin_frame(out);
    out.push(STREAM);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&key.to_le_bytes());
    out.push(level);
    out.extend_from_slice(&credit.to_le_bytes());
    encode_args(out)?;
    end_frame(out, start);
    Ok(())
}

/// Bytes of an `ITEMS` frame before its items: prefix, kind, id, count.
pub(crate) const ITEMS_HEADER: usize = PREFIX + 1 + 8 + 4;
/// Bytes before each item in an `ITEMS` frame.
pub(crate) const ITEM_PREFIX: usize = 4;

/// Begin an `ITEMS` frame of stream `id` (its count is written by [`end_items`]).
pub(crate) fn begin_items(out: &mut Vec<u8>, id: u64) -> usize {
    let start = begin_frame(out);
    out.push(ITEMS);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    start
}

/// Append one encoded item to the `ITEMS` frame being built.
pub(crate) fn push_item(out: &mut Vec<u8>, item: &[u8]) {
    let len = u32::try_from(item.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(item);
}

/// Close the `ITEMS` frame begun at `start`, holding `count` items.
pub(crate) fn end_items(out: &mut [u8], start: usize, count: u32) {
    let at = start + PREFIX + 1 + 8;
    out[at..at + 4].copy_from_slice(&count.to_le_bytes());
    end_frame(out, start);
}

/// How many sized items `bytes` holds, exactly, or why it is malformed.
fn items_in(mut bytes: &[u8]) -> Result<u32, ProtocolError> {
    let mut count = 0_u32;
    while !bytes.is_empty() {
        let mut fields = Fields(bytes);
        let len = fields.u32()? as usize;
        let rest = fields.rest();
        if len > rest.len() {
            return Err(ProtocolError::Malformed("an item longer than its frame"));
        }
        bytes = &rest[len..];
        count = count
            .checked_add(1)
            .ok_or(ProtocolError::Malformed("too many items"))?;
    }
    Ok(count)
}

/// The items of a decoded `ITEMS` frame, each one's encoding.
pub(crate) fn items(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = bytes.split_first_chunk::<ITEM_PREFIX>()?;
        let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
        let (item, rest) = rest.split_at(len);
        bytes = rest;
        Some(item)
    })
}

/// Reserve the length prefix of a frame about to be appended; returns where it starts.
pub(crate) fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX]);
    start
}

/// Write the length prefix of the frame begun at `start`. A body of `u32::MAX` bytes or more
/// gets the prefix `u32::MAX`, above every limit (limits are at most `u32::MAX - 1`): the
/// parent refuses to send such a call, and refuses such a response as oversized.
pub(crate) fn end_frame(out: &mut [u8], start: usize) {
    let len = out.len() - start - PREFIX;
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out[start..start + PREFIX].copy_from_slice(&len.to_le_bytes());
}

/// The body length of the frame at `frame` (which starts with its prefix).
pub(crate) fn body_len(frame: &[u8]) -> usize {
    let mut prefix = [0; PREFIX];
    prefix.copy_from_slice(&frame[..PREFIX]);
    u32::from_le_bytes(prefix) as usize
}

struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(ProtocolError::Malformed("frame shorter than its fields"))?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        self.take().map(|[byte]| byte)
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        self.take().map(u64::from_le_bytes)
    }
    fn rest(self) -> &'a [u8] {
        self.0
    }
    /// Text after its `u32` length.
    fn sized_text(&mut self) -> Result<&'a str, ProtocolError> {
        let len = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if len > self.0.len() {
            return Err(ProtocolError::Malformed("frame shorter than its fields"));
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(text).map_err(|_| ProtocolError::Malformed("text is not UTF-8"))
    }
    fn text(self) -> Result<&'a str, ProtocolError> {
        std::str::from_utf8(self.0).map_err(|_| ProtocolError::Malformed("text is not UTF-8"))
    }
}

/// Reads frames from a byte stream, blocking or not (see [`fill`](FrameReader::fill)).
pub(crate) struct FrameReader<R> {
    source: R,
    /// Storage, all initialised; data lives in `start..end`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    eof: bool,
}

impl<R: Read> FrameReader<R> {
    pub(crate) fn new(source: R, max: usize) -> FrameReader<R> {
        FrameReader::with_capacity(source, max, 64 << 10)
    }

    /// A reader whose buffer starts at `capacity` bytes (tests start small, to exercise growth).
    pub(crate) fn with_capacity(source: R, max: usize, capacity: usize) -> FrameReader<R> {
        FrameReader {
            source,
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            max,
            eof: false,
        }
    }

    /// The range of the next complete frame's body in the buffer, if one is buffered.
    fn complete_frame(&self) -> Result<Option<(usize, usize)>, ProtocolError> {
        let pending = &self.buf[self.start..self.end];
        if pending.len() < PREFIX {
            return Ok(None);
        }
        let len = body_len(pending);
        if len > self.max {
            return Err(ProtocolError::TooLarge { len, max: self.max });
        }
        if pending.len() < PREFIX + len {
            return Ok(None);
        }
        let body = self.start + PREFIX;
        Ok(Some((body, body + len)))
    }

    /// The stream read from (a worker polls it before it blocks on it).
    #[cfg(unix)]
    pub(crate) fn source(&self) -> &R {
        &self.source
    }

    /// Whether a whole frame is already buffered (so reading it will not block).
    pub(crate) fn has_frame(&self) -> bool {
        matches!(self.complete_frame(), Ok(Some(_)))
    }

    /// [`fill`](FrameReader::fill) until a non-blocking source has nothing more for now, or a
    /// whole frame waits to be taken. `Ok(true)` at the end of the stream.
    pub(crate) fn fill_available(&mut self) -> io::Result<bool> {
        loop {
            match self.fill() {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Read once from the source into the buffer. Returns the bytes read (0 at end of stream);
    /// `WouldBlock` when a non-blocking source has nothing, and also, without reading, while a
    /// whole frame (or the prefix of an oversized one) waits to be taken: a peer that writes
    /// faster than frames are taken must not grow the buffer.
    pub(crate) fn fill(&mut self) -> io::Result<usize> {
        if !matches!(self.complete_frame(), Ok(None)) {
            // A bare kind: this is every answer's path, and a message would be allocated.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        let pending = self.end - self.start;
        // The next frame's size with its prefix, once that is in: within the limit, and not all
        // here yet (both checked above).
        let frame = if pending >= PREFIX {
            PREFIX + body_len(&self.buf[self.start..self.end])
        } else {
            PREFIX
        };
        // Grow towards the frame's end, a step at a time.
        let wanted = (frame - pending).min(GROWTH_STEP);
        if self.buf.len() - self.end < wanted {
            // Move pending data to the front first; grow only if that is not enough.
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, pending);
            if self.buf.len() - self.end < wanted {
                // Double, for few copies, but never past the frame's end: a frame at the limit
                // costs no more than the limit.
                let len = (self.end + wanted).max((2 * self.buf.len()).min(frame));
                self.buf.reserve_exact(len - self.buf.len());
                self.buf.resize(len, 0);
            }
        }
        let read = self.source.read(&mut self.buf[self.end..]);
        match read {
            Ok(0) => self.eof = true,
            Ok(n) => self.end += n,
            Err(_) => {}
        }
        read
    }

    /// Where the next buffered frame's body lies in the buffer, without reading; `Ok(None)`:
    /// more bytes are needed. The range stays valid until the next [`fill`](Self::fill).
    pub(crate) fn buffered_range(&mut self) -> Result<Option<Range<usize>>, ProtocolError> {
        match self.complete_frame()? {
            Some((body, end)) => {
                self.start = end;
                Ok(Some(body..end))
            }
            None if self.eof && self.start < self.end => Err(ProtocolError::Truncated),
            None => Ok(None),
        }
    }

    /// Bytes of the buffer, by a range from [`buffered_range`](Self::buffered_range).
    pub(crate) fn slice(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// The next buffered frame's body, without reading. `Ok(None)`: more bytes are needed.
    pub(crate) fn buffered_frame(&mut self) -> Result<Option<&[u8]>, ProtocolError> {
        Ok(self.buffered_range()?.map(|range| &self.buf[range]))
    }

    /// The next frame's body, reading (blocking) as needed. `Ok(None)` at a clean end of
    /// stream between frames.
    pub(crate) fn next_frame(&mut self) -> Result<Option<&[u8]>, ProtocolError> {
        loop {
            if self.complete_frame()?.is_some() {
                return self.buffered_frame();
            }
            if self.eof {
                return match self.buffered_frame()? {
                    Some(_) => unreachable!("checked above"),
                    None => Ok(None),
                };
            }
            match self.fill() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Bytes currently allocated for buffering (for tests of the allocation bound).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn allocated(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::process::fuzz::stream::{Ending, Trickle, read_like_the_pool};
    use proptest::prelude::*;

    fn frames(messages: &[Message<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            m.encode(&mut out);
        }
        out
    }

    #[test]
    fn messages_round_trip() {
        let all = [
            Message::Call {
                id: 7,
                key: 0xdead_beef,
                level: 3,
                args: b"args",
            },
            Message::Span {
                id: 7,
                span: 2,
                parent: 1,
                level: 4,
                name: "step",
                fields: "n=3",
            },
            Message::Event {
                id: 7,
                parent: 2,
                level: 3,
                target: "my_crate",
                fields: "n=3 ok=true",
                message: "done",
            },
            Message::Stream {
                id: 11,
                key: 5,
                level: 0,
                credit: 16,
                args: b"xs",
            },
            Message::Credit { id: 11, items: 8 },
            Message::Items {
                id: 11,
                count: 2,
                items: &[1, 0, 0, 0, 7, 0, 0, 0, 0],
            },
            Message::Items {
                id: 11,
                count: 0,
                items: &[],
            },
            Message::Hello {
                version: PROTOCOL_VERSION,
                fingerprint: 42,
                pid: 1234,
            },
            Message::Refused {
                reason: "other build",
            },
            Message::Returned {
                id: 7,
                micros: 15,
                shared: false,
                payload: &[1, 2, 3],
            },
            Message::Returned {
                id: 7,
                micros: 15,
                shared: true,
                payload: &[1, 2, 3],
            },
            Message::Panicked {
                id: 8,
                message: "boom",
                location: "src/lib.rs:3:5",
                backtrace: "0: app::f\n1: main",
            },
            Message::Panicked {
                id: 8,
                message: "",
                location: "",
                backtrace: "",
            },
            Message::Failed {
                id: 9,
                failure: Failure::Arguments,
                message: "no such function",
            },
            Message::Oversized {
                id: 10,
                bytes: u64::MAX,
            },
        ];
        let bytes = frames(&all);
        let mut reader = FrameReader::new(&bytes[..], 1 << 20);
        for expected in &all {
            let body = reader.next_frame().unwrap().unwrap();
            assert_eq!(&Message::decode(body).unwrap(), expected);
        }
        assert!(reader.next_frame().unwrap().is_none());
    }

    #[test]
    fn items_are_built_in_place_and_read_back() {
        let mut out = Vec::new();
        let start = begin_items(&mut out, 3);
        assert_eq!(out.len(), ITEMS_HEADER);
        for item in [&b"a"[..], b"", b"xyz"] {
            push_item(&mut out, item);
        }
        end_items(&mut out, start, 3);
        let Message::Items {
            id,
            count,
            items: bytes,
        } = Message::decode(&out[PREFIX..]).unwrap()
        else {
            panic!("not an items frame")
        };
        assert_eq!((id, count), (3, 3));
        assert_eq!(items(bytes).collect::<Vec<_>>(), [&b"a"[..], b"", b"xyz"]);
    }

    /// A count that is not the number of items, or an item's length past the frame's end.
    #[test]
    fn lying_items_frames_are_malformed() {
        let frame = |count: u32, items: &[u8]| {
            let mut body = vec![ITEMS];
            body.extend_from_slice(&1_u64.to_le_bytes());
            body.extend_from_slice(&count.to_le_bytes());
            body.extend_from_slice(items);
            body
        };
        let one = [1, 0, 0, 0, 9];
        assert!(Message::decode(&frame(1, &one)).is_ok());
        for (count, items) in [
            (2, &one[..]),
            (0, &one[..]),
            (1, &[5, 0, 0, 0, 9][..]),
            (1, &[1, 0][..]),
        ] {
            assert!(
                matches!(
                    Message::decode(&frame(count, items)),
                    Err(ProtocolError::Malformed(_))
                ),
                "{count} {items:?}"
            );
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_allocation() {
        let mut bytes = u32::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        let mut reader = FrameReader::new(&bytes[..], 1024);
        let err = reader.next_frame().unwrap_err();
        assert!(
            matches!(err, ProtocolError::TooLarge { len, max: 1024 } if len == u32::MAX as usize)
        );
        assert!(reader.allocated() <= 128 << 10);
    }

    /// A text's length that runs past its frame is refused, not read beyond the frame.
    #[test]
    fn a_lying_text_length_is_malformed() {
        let mut body = vec![PANICKED];
        body.extend_from_slice(&1_u64.to_le_bytes());
        body.extend_from_slice(&1000_u32.to_le_bytes());
        body.extend_from_slice(b"short");
        assert!(matches!(
            Message::decode(&body),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_frames_are_errors_not_hangs() {
        let bytes = frames(&[Message::Panicked {
            id: 1,
            message: "cut short",
            location: "",
            backtrace: "",
        }]);
        let mut reader = FrameReader::new(&bytes[..bytes.len() - 3], 1024);
        assert!(matches!(reader.next_frame(), Err(ProtocolError::Truncated)));
    }

    #[test]
    fn a_lying_length_costs_only_what_arrives() {
        // Claims 200 MiB (under a 256 MiB limit) but sends 10 bytes.
        let mut bytes = (200_u32 << 20).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[RETURNED; 10]);
        let mut reader = FrameReader::new(&bytes[..], 256 << 20);
        assert!(matches!(reader.next_frame(), Err(ProtocolError::Truncated)));
        assert!(reader.allocated() <= (64 << 10) + GROWTH_STEP + PREFIX);
    }

    #[test]
    fn a_frame_at_the_limit_takes_no_more_than_the_limit() {
        // 5 MiB, arriving 64 KiB at a time: growth by doubling from 1 MiB would reach 8 MiB.
        let max = 5 << 20;
        let mut bytes = Vec::new();
        encode_call(&mut bytes, 1, 2, 0, |out| {
            out.resize(PREFIX + max, 7);
            Ok::<_, ()>(())
        })
        .unwrap();
        let mut reader = FrameReader::new(Trickle::new(&bytes, 64 << 10, 1), max);
        let (frames, ending) = read_like_the_pool(&mut reader, bytes.len());
        assert_eq!((frames.len(), ending), (1, Ending::Clean));
        assert!(reader.allocated() <= PREFIX + max, "{}", reader.allocated());
    }

    #[test]
    fn the_parent_stops_reading_at_an_oversized_frame() {
        // A worker answering with 2 MiB under a 4 KiB limit: the frame is refused from its
        // prefix, so its body need not (and must not) be buffered.
        let mut bytes = Vec::new();
        Message::Returned {
            id: 1,
            micros: 1,
            shared: false,
            payload: &vec![0; 2 << 20],
        }
        .encode(&mut bytes);
        let mut reader = FrameReader::new(Trickle::new(&bytes, 64 << 10, 0), 4096);
        let (frames, ending) = read_like_the_pool(&mut reader, bytes.len());
        assert!(frames.is_empty());
        assert!(matches!(ending, Ending::TooLarge(_)), "{ending:?}");
        assert!(reader.allocated() <= 64 << 10, "{}", reader.allocated());
    }

    #[test]
    fn whole_frames_are_taken_before_more_is_read() {
        // 200 answers of 1 KiB waiting in the pipe, read 64 KiB at a time into a small buffer:
        // the buffer holds about one frame, not everything the worker wrote.
        let mut bytes = Vec::new();
        for id in 0..200 {
            Message::Returned {
                id,
                micros: 1,
                shared: false,
                payload: &[9; 1024],
            }
            .encode(&mut bytes);
        }
        let mut reader =
            FrameReader::with_capacity(Trickle::new(&bytes, 64 << 10, 0), 1 << 20, 4096);
        let (frames, ending) = read_like_the_pool(&mut reader, bytes.len());
        assert_eq!((frames.len(), ending), (200, Ending::Clean));
        assert!(reader.allocated() <= 8192, "{}", reader.allocated());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random bytes: the reader and decoder never panic, always end, and never hold
        /// more than the limit plus one growth step.
        #[test]
        fn random_bytes_never_panic_or_overallocate(bytes in proptest::collection::vec(any::<u8>(), 0..4096), max in 1_usize..8192) {
            let mut reader = FrameReader::new(&bytes[..], max);
            let mut frames = 0;
            while let Ok(Some(body)) = reader.next_frame() {
                let _ = Message::decode(body);
                frames += 1;
                prop_assert!(frames <= bytes.len());
            }
            prop_assert!(reader.allocated() <= (64 << 10) + max + GROWTH_STEP + PREFIX);
        }

        /// Valid frames cut anywhere: every whole frame before the cut decodes, the cut one is
        /// an error, nothing panics.
        #[test]
        fn valid_frames_cut_anywhere(ids in proptest::collection::vec(any::<u64>(), 1..20), cut in any::<prop::sample::Index>()) {
            let messages: Vec<_> = ids.iter().map(|&id| Message::Returned { id, micros: 1, shared: false, payload: b"xyz" }).collect();
            let bytes = frames(&messages);
            let cut = cut.index(bytes.len() + 1);
            let mut reader = FrameReader::new(&bytes[..cut], 1 << 16);
            let mut seen = 0;
            loop {
                match reader.next_frame() {
                    Ok(Some(body)) => {
                        prop_assert_eq!(Message::decode(body).unwrap(), Message::Returned { id: ids[seen], micros: 1, shared: false, payload: b"xyz" });
                        seen += 1;
                    }
                    // A clean end only where a frame ends (all frames have the same length).
                    Ok(None) => { prop_assert_eq!(cut, seen * (bytes.len() / ids.len())); break; }
                    Err(_) => { prop_assert!(cut % (bytes.len() / ids.len()) != 0); break; }
                }
            }
        }
    }
}

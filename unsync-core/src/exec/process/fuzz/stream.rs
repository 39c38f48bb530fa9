//! Reading frames as the pool does, from a source that trickles bytes as a pipe would: support
//! for the frame reader's tests and the `frame_decoder` check.

use std::io::{self, Read};

use crate::exec::process::protocol::{FrameReader, ProtocolError};

/// How a stream of frames ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Clean,
    TooLarge(usize),
    Truncated,
    Other(String),
}

impl From<ProtocolError> for Ending {
    fn from(error: ProtocolError) -> Ending {
        match error {
            ProtocolError::TooLarge { len, .. } => Ending::TooLarge(len),
            ProtocolError::Truncated => Ending::Truncated,
            other => Ending::Other(other.to_string()),
        }
    }
}

/// A non-blocking source, as a pipe: at most `chunk` bytes per read, and `WouldBlock` after
/// every `burst` reads (never, if 0: the writer is far ahead of the reader).
pub(crate) struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
    burst: usize,
    reads: usize,
}

impl Trickle<'_> {
    pub(crate) fn new(data: &[u8], chunk: usize, burst: usize) -> Trickle<'_> {
        Trickle {
            data,
            chunk,
            burst,
            reads: 0,
        }
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.burst > 0 && self.reads == self.burst && !self.data.is_empty() {
            self.reads = 0;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.reads += 1;
        Ok(n)
    }
}

/// Read a non-blocking source as the pool's I/O thread does: fill until the source would
/// block, then take every buffered frame; until the end or the first error. `len` is the
/// source's length, to turn a loop that makes no progress into a failure instead of a hang.
pub(crate) fn read_like_the_pool<R: Read>(
    reader: &mut FrameReader<R>,
    len: usize,
) -> (Vec<Vec<u8>>, Ending) {
    let mut frames = Vec::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 2 * len + 4, "the reader makes no progress");
        let ended = match reader.fill_available() {
            Ok(ended) => ended,
            Err(e) => return (frames, Ending::Other(e.to_string())),
        };
        loop {
            match reader.buffered_range() {
                Ok(Some(range)) => frames.push(reader.slice(range).to_vec()),
                Ok(None) => break,
                Err(e) => return (frames, Ending::from(e)),
            }
        }
        if ended {
            return (frames, Ending::Clean);
        }
    }
}

//! Large payloads through shared memory (Linux): a [`Bulk`](super::codec::Bulk) block of at
//! least [`MIN_BLOCK`] bytes is copied once into memory that parent and worker both map, and
//! its frame carries only where it lies; the other side copies it out once. A round trip of N
//! bytes then costs four copies of N, instead of the pipe's many small ones.
//!
//! Two kinds of arena, each a memfd mapped whole, sealed so that no one can shrink it (a page
//! that vanished under a reader would raise `SIGBUS`):
//! - the pool's arguments arena, which only the parent can write (sealed against any other
//!   writer) and every worker maps read-only: a call's blocks are
//!   allocated in it (first fit) when its arguments are encoded, and freed when the call is
//!   done (its job drops), so a call given again after its worker died still finds them;
//! - each worker's results arena: the worker writes an answer's blocks from the start of it,
//!   and the parent's I/O thread copies them out while it settles that answer. The arena's
//!   first 8 bytes count the answers with blocks (`RETURNED_SHARED`) the parent has settled:
//!   the worker starts again from the beginning once that count reaches the number it sent,
//!   and goes on after its last block meanwhile (pipelined calls).
//!
//! A block that does not fit, a call whose answer must stay self-contained (the remote
//! worker's), streams, and every other platform: the block crosses in the frame as before.
//! Mappings live as long as the pool and its workers, so the common sizes cost no `mmap` and
//! no page fault after the first call. The pages a payload touched stay allocated, except a
//! results arena's beyond its first [`KEEP_RESIDENT`] bytes, given back at the worker's next
//! call; the arguments arena cannot give pages back (its seal against other writers also
//! forbids punching holes), so it keeps the largest arguments sent at once until the pool
//! shuts down. A large vector that its owner is done with is kept to copy the next block of
//! its type into ([`Spare`]): a call's argument for its result, a worker's last result for its
//! next argument; a function from a large vector to another then copies only into memory
//! already allocated, not into fresh pages.
//!
//! A broken worker can write anything into its results arena and any offsets into its frames:
//! every block is checked to lie in the arena before it is copied, and what is copied is plain
//! numbers, so the worst outcome is a wrong value or a failed decode of that call.

// Windows starts its workers without arenas: what makes them is unused there.
#![cfg_attr(windows, allow(dead_code))]

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{self, BulkElement, CodecError};

/// Blocks from this size up go through shared memory (below it, the pipe is as fast).
pub(crate) const MIN_BLOCK: usize = 64 << 10;

#[cfg(all(target_os = "linux", not(unsync_portable)))]
mod region {
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
    use std::sync::atomic::AtomicU64;

    use super::super::sys::{Mapping, adopt_inherited_fd};

    /// A sealed memfd, mapped whole.
    pub(crate) struct Region {
        mapping: Mapping,
        fd: OwnedFd,
    }

    impl Region {
        /// A new arena of `len` bytes (pages are only allocated once written), mapped for
        /// writing here; `only_here`: no one else can ever write it (not even by opening
        /// `/proc/<pid>/fd/<fd>` anew), only through this mapping.
        pub(crate) fn create(name: &str, len: usize, only_here: bool) -> io::Result<Region> {
            use rustix::fs::{MemfdFlags, SealFlags};
            let fd =
                rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
            rustix::fs::ftruncate(&fd, len as u64)?;
            let mapping = Mapping::new(fd.as_fd(), len, true)?;
            let mut seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
            if only_here {
                // Since Linux 5.1; before, no shared memory (the pipe carries everything).
                seals |= SealFlags::FUTURE_WRITE;
            }
            rustix::fs::fcntl_add_seals(&fd, seals)?;
            Ok(Region { mapping, fd })
        }

        /// The arena whose fd this worker inherited, mapped read-only or not.
        pub(crate) fn inherit(fd: RawFd, writable: bool) -> Result<Region, String> {
            if !super::super::sys::is_sealed_memfd(fd) {
                return Err(format!(
                    "the fd {fd} is not the pool's shared memory (an open memfd sealed against shrinking)"
                ));
            }
            // The pool passed this fd to this process for its sole use, and it is open.
            let fd = adopt_inherited_fd(fd);
            let len = rustix::fs::fstat(&fd)
                .map_err(|e| format!("cannot read the shared memory's size: {e}"))?
                .st_size;
            let len = usize::try_from(len).map_err(|_| "a shared memory of negative size")?;
            let mapping = Mapping::new(fd.as_fd(), len, writable)
                .map_err(|e| format!("cannot map the shared memory: {e}"))?;
            Ok(Region { mapping, fd })
        }

        pub(crate) fn fd(&self) -> BorrowedFd<'_> {
            self.fd.as_fd()
        }

        /// Another fd of the same memory that only allows reading (for the workers).
        pub(crate) fn read_only_fd(&self) -> io::Result<OwnedFd> {
            use rustix::fs::{Mode, OFlags};
            let path = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
            Ok(rustix::fs::open(
                path.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?)
        }

        /// Copy `bytes` in at `offset`; false if they do not fit (or the mapping is read-only).
        pub(crate) fn write(&self, offset: usize, bytes: &[u8]) -> bool {
            self.mapping.write(offset, bytes)
        }

        /// A copy of the `len` bytes at `offset` as `E`s, if they lie in the mapping and are
        /// whole `E`s.
        pub(crate) fn read_vec<E: bytemuck::Pod>(
            &self,
            offset: usize,
            len: usize,
            reuse: Option<Vec<E>>,
        ) -> Option<Vec<E>> {
            self.mapping.read_vec(offset, len, reuse)
        }

        /// The counter in the first bytes of the memory.
        pub(crate) fn counter(&self) -> &AtomicU64 {
            self.mapping.counter()
        }

        /// Free the memory of bytes `from..to` (the pages wholly inside; reading any of
        /// the bytes gives zeros). Best effort: the memory stays if the system refuses.
        pub(crate) fn give_back(&self, from: usize, to: usize) {
            use rustix::fs::FallocateFlags;
            if to > from {
                let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
                let _ = rustix::fs::fallocate(&self.fd, flags, from as u64, (to - from) as u64);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", not(unsync_portable))))]
mod region {
    use std::io;
    use std::sync::atomic::AtomicU64;

    /// No shared memory on this platform: never made, so none of its operations ever runs.
    pub(crate) enum Region {}

    impl Region {
        pub(crate) fn create(_name: &str, _len: usize, _only_here: bool) -> io::Result<Region> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "shared memory is only used on Linux",
            ))
        }
        #[allow(dead_code)]
        pub(crate) fn inherit(_fd: i32, _writable: bool) -> Result<Region, String> {
            Err("shared memory is only used on Linux".into())
        }
        pub(crate) fn give_back(&self, _from: usize, _to: usize) {
            match *self {}
        }
        pub(crate) fn write(&self, _offset: usize, _bytes: &[u8]) -> bool {
            match *self {}
        }
        pub(crate) fn read_vec<E: bytemuck::Pod>(
            &self,
            _: usize,
            _: usize,
            _: Option<Vec<E>>,
        ) -> Option<Vec<E>> {
            match *self {}
        }
        pub(crate) fn counter(&self) -> &AtomicU64 {
            match *self {}
        }
        #[cfg(unix)]
        pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
            match *self {}
        }
    }
}

pub(crate) use region::Region;

/// Bytes at the start of a results arena: the settled-answers counter, on its own cache line.
const HEADER: usize = 64;
/// Blocks start on cache lines.
const ALIGN: usize = 64;

fn aligned(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

/// The pool's arguments arena, and which parts of it are free.
pub(crate) struct ArgsArena {
    region: Region,
    /// The fd every worker inherits: read-only.
    #[cfg(unix)]
    reader: std::os::fd::OwnedFd,
    /// Free ranges, by offset, never adjacent (merged when freed).
    free: std::sync::Mutex<std::collections::BTreeMap<usize, usize>>,
}

impl ArgsArena {
    /// An arena of `capacity` bytes, or `None` where shared memory is not used (or cannot be
    /// made: the pipe carries everything then).
    pub(crate) fn create(capacity: usize) -> Option<ArgsArena> {
        #[cfg(all(target_os = "linux", not(unsync_portable)))]
        {
            let region = Region::create("unsync-arguments", capacity, true).ok()?;
            let reader = region.read_only_fd().ok()?;
            Some(ArgsArena {
                region,
                reader,
                free: std::sync::Mutex::new([(0, capacity)].into()),
            })
        }
        #[cfg(not(all(target_os = "linux", not(unsync_portable))))]
        {
            let _ = capacity;
            None
        }
    }

    /// The fd a worker maps the arena through (read-only).
    #[cfg(unix)]
    pub(crate) fn reader_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.reader.as_raw_fd()
    }

    fn allocate(&self, len: usize) -> Option<usize> {
        let len = aligned(len);
        let mut free = crate::exec::lock(&self.free);
        let (&offset, &room) = free.iter().find(|&(_, &room)| room >= len)?;
        free.remove(&offset);
        if room > len {
            free.insert(offset + len, room - len);
        }
        Some(offset)
    }

    fn release(&self, offset: usize, len: usize) {
        let (mut offset, mut len) = (offset, aligned(len));
        let mut free = crate::exec::lock(&self.free);
        if let Some((&before, &room)) = free.range(..offset).next_back() {
            if before + room == offset {
                free.remove(&before);
                offset = before;
                len += room;
            }
        }
        if let Some(room) = free.remove(&(offset + len)) {
            len += room;
        }
        free.insert(offset, len);
    }
}

/// The blocks one call's arguments hold in the arguments arena, freed when this drops.
#[derive(Default)]
pub(crate) struct ArgsBlocks {
    arena: Option<&'static ArgsArena>,
    blocks: Vec<(usize, usize)>,
}

impl ArgsBlocks {
    /// Bytes of the blocks (they count towards the frame limit).
    pub(crate) fn bytes(&self) -> usize {
        self.blocks.iter().map(|&(_, len)| len).sum()
    }
}

impl Drop for ArgsBlocks {
    fn drop(&mut self) {
        if let Some(arena) = self.arena {
            for &(offset, len) in &self.blocks {
                arena.release(offset, len);
            }
        }
    }
}

/// A worker's results arena, as the worker writes it.
pub(crate) struct ResultsWriter {
    region: Region,
    /// Where the next block goes.
    next: usize,
    /// Answers with blocks sent so far.
    sent: u64,
}

impl ResultsWriter {
    pub(crate) fn new(region: Region) -> ResultsWriter {
        ResultsWriter {
            region,
            next: HEADER,
            sent: 0,
        }
    }

    /// Once the parent has settled every answer sent, start again from the beginning, and
    /// give back the memory the last answers used past [`KEEP_RESIDENT`].
    fn start_over_if_settled(&mut self) {
        if self.next > HEADER && self.region.counter().load(Ordering::Acquire) == self.sent {
            if self.next > KEEP_RESIDENT {
                self.region.give_back(KEEP_RESIDENT, self.next);
            }
            self.next = HEADER;
        }
    }
}

/// Bytes of a worker's results arena that stay allocated between answers, so that answers up
/// to this size find their pages ready; a larger answer's memory beyond it is given back at
/// the worker's next call.
const KEEP_RESIDENT: usize = 64 << 20;

/// Where the blocks of the value being encoded go.
enum Sink {
    Args(ArgsBlocks),
    Results {
        writer: ResultsWriter,
        bytes: usize,
        used: bool,
    },
}

thread_local! {
    /// Set only while [`encode_args`] or [`encode_result`] encodes.
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
    /// Set only while a value whose blocks may lie in shared memory is decoded.
    static SOURCE: RefCell<Option<Arc<Region>>> = const { RefCell::new(None) };
    /// In a worker, while it runs a call whose answer may have blocks.
    static ANSWER_MAY_SHARE: Cell<bool> = const { Cell::new(false) };
}

/// Put a block where the value being encoded keeps its blocks, if anywhere: its offset there.
/// Called by `Bulk` for every block of at least [`MIN_BLOCK`] bytes.
pub(crate) fn put(bytes: &[u8]) -> Option<u64> {
    SINK.with_borrow_mut(|sink| match sink.as_mut()? {
        Sink::Args(blocks) => {
            let arena = blocks.arena?;
            let offset = arena.allocate(bytes.len())?;
            arena.region.write(offset, bytes);
            blocks.blocks.push((offset, bytes.len()));
            Some(offset as u64)
        }
        Sink::Results {
            writer,
            bytes: total,
            used,
        } => {
            let offset = writer.next;
            if !writer.region.write(offset, bytes) {
                return None;
            }
            writer.next = offset + aligned(bytes.len());
            *total += bytes.len();
            *used = true;
            Some(offset as u64)
        }
    })
}

/// The block of `len` bytes at `offset` of the memory the value being decoded refers to, as
/// `E`s. Called by `Bulk` for a block that crossed through shared memory.
pub(crate) fn take<E: BulkElement>(offset: u64, len: u64) -> Result<Vec<E>, String> {
    SOURCE.with_borrow(|source| {
        let Some(region) = source else {
            return Err("a block in shared memory, where none is shared".into());
        };
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err("a shared block beyond the address space".into());
        };
        let reuse = SPARE.with_borrow_mut(|spare| spare.take_fitting::<E>(len));
        region.read_vec(offset, len, reuse).ok_or_else(|| {
            format!("a shared block of {len} bytes at {offset} that does not lie in its memory or is not made of whole elements")
        })
    })
}

/// Run `f` with `sink` as where blocks go; give the sink back (dropped if `f` unwinds).
fn with_sink<R>(sink: Sink, f: impl FnOnce() -> R) -> (R, Sink) {
    let restore = Restore(&SINK, SINK.replace(Some(sink)));
    let result = f();
    let sink = SINK.take().expect("the sink is still set");
    drop(restore);
    (result, sink)
}

/// Run `f`, which decodes a value whose blocks may lie in `region`.
pub(crate) fn decoding_from<R>(region: Option<&Arc<Region>>, f: impl FnOnce() -> R) -> R {
    let Some(region) = region else { return f() };
    let _restore = Restore(&SOURCE, SOURCE.replace(Some(region.clone())));
    f()
}

/// Puts a thread-local's outer value back, also when unwinding.
struct Restore<T: 'static>(
    &'static std::thread::LocalKey<RefCell<Option<T>>>,
    Option<T>,
);

impl<T> Drop for Restore<T> {
    fn drop(&mut self) {
        self.0.set(self.1.take());
    }
}

/// Encode a call's arguments (in the parent), their large blocks into `arena` when there is
/// one: the blocks stay allocated until the returned [`ArgsBlocks`] drops.
pub(crate) fn encode_args<T: Serialize + ?Sized>(
    arena: Option<&'static ArgsArena>,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<ArgsBlocks, CodecError> {
    let blocks = ArgsBlocks {
        arena,
        blocks: Vec::new(),
    };
    if arena.is_none() {
        return codec::encode(value, out).map(|()| blocks);
    }
    let (encoded, sink) = with_sink(Sink::Args(blocks), || codec::encode(value, out));
    // Irrefutable where shared memory is not used (`Sink::Results` cannot be made there).
    #[allow(irrefutable_let_patterns)]
    let Sink::Args(blocks) = sink else {
        unreachable!("the sink put in is the one taken out")
    };
    encoded.map(|()| blocks)
}

/// The worker's arenas: the pool's arguments arena (read-only) and its own results arena.
#[derive(Default)]
pub(crate) struct WorkerArenas {
    args: Option<Arc<Region>>,
    results: Option<ResultsWriter>,
}

/// A large vector that its owner is done with, for the next block of the same element type
/// from shared memory to be copied into: its pages are allocated already, where a new vector of
/// that size would be fresh memory, which the system zeroes page by page as the copy first
/// touches it (a fifth of a 64 MiB round trip's time). Of [`SPARE_BYTES`]. Two owners:
/// - a worker, its last large `Vec` result, for its next call's arguments
///   ([`encode_vec_result`]);
/// - in the parent, a call of a function from a large vector to a vector of that type, its
///   argument, for its result (`pool::spawn_process_reusing`; the job holds it until then).
#[derive(Default)]
pub(crate) struct Spare(Option<Box<dyn std::any::Any + Send>>);

thread_local! {
    /// The spare of the worker's calls (on the thread that runs them), or of the call whose
    /// result is being decoded (see [`reusing`]).
    static SPARE: RefCell<Spare> = RefCell::default();
}

/// Run `f`, which decodes a call's result, with `spare` for its block to be copied into.
pub(crate) fn reusing<R>(spare: Option<Spare>, f: impl FnOnce() -> R) -> R {
    /// Puts the outer spare back, also when unwinding; a spare left unused (the result was an
    /// error, or small) drops with it.
    struct Outer(Spare);
    impl Drop for Outer {
        fn drop(&mut self) {
            SPARE.set(std::mem::take(&mut self.0));
        }
    }
    let Some(spare) = spare else { return f() };
    let _outer = Outer(SPARE.replace(spare));
    f()
}

/// Sizes of vectors worth keeping as the [`Spare`]: from where allocators hand out fresh
/// memory for each vector, up to what a worker keeps resident anyway.
const SPARE_BYTES: std::ops::RangeInclusive<usize> = (4 << 20)..=KEEP_RESIDENT;

impl Spare {
    /// `vector` as a spare, if it is of [`SPARE_BYTES`].
    pub(crate) fn of<E: BulkElement>(vector: Vec<E>) -> Option<Spare> {
        let mut spare = Spare::default();
        spare.keep(vector);
        spare.0.is_some().then_some(spare)
    }

    fn keep<E: BulkElement>(&mut self, vector: Vec<E>) {
        if SPARE_BYTES.contains(&(vector.capacity() * size_of::<E>())) {
            self.0 = Some(Box::new(vector));
        }
    }

    /// The spare if it is a vector of `E` with room for `bytes` bytes, and no more than
    /// twice that (the vector goes to the caller, spare room and all).
    fn take_fitting<E: BulkElement>(&mut self, bytes: usize) -> Option<Vec<E>> {
        let room = self.0.as_ref()?.downcast_ref::<Vec<E>>()?.capacity() * size_of::<E>();
        if room < bytes || room / 2 > bytes {
            return None;
        }
        self.0.take()?.downcast().ok().map(|vector| *vector)
    }
}

impl WorkerArenas {
    pub(crate) fn new(args: Option<Region>, results: Option<Region>) -> WorkerArenas {
        WorkerArenas {
            args: args.map(Arc::new),
            results: results.map(ResultsWriter::new),
        }
    }
}

thread_local! {
    /// The worker's arenas, on the thread that runs its calls.
    static WORKER: RefCell<WorkerArenas> = RefCell::default();
}

/// Make `arenas` those of this thread's calls (a worker's, at start).
pub(crate) fn install_worker_arenas(arenas: WorkerArenas) {
    WORKER.set(arenas);
}

/// What [`answering`] learnt of the answer's blocks.
pub(crate) struct Answered {
    /// Bytes of the result's blocks in the results arena (0: none, the frame is whole).
    pub(crate) shared_bytes: usize,
}

/// In a worker, run call `f` (the shim: `decode_args`, the body, `encode_result`), whose
/// answer may keep blocks in the results arena when `may_share`.
pub(crate) fn answering<R>(may_share: bool, f: impl FnOnce() -> R) -> (R, Answered) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ANSWER_MAY_SHARE.set(false);
        }
    }
    LAST_SHARED.set(0);
    ANSWER_MAY_SHARE.set(may_share);
    if may_share {
        WORKER.with_borrow_mut(|arenas| {
            if let Some(writer) = &mut arenas.results {
                writer.start_over_if_settled();
            }
        });
    }
    let reset = Reset;
    let result = f();
    drop(reset);
    let answered = Answered {
        shared_bytes: LAST_SHARED.take(),
    };
    (result, answered)
}

thread_local! {
    /// Bytes of blocks the last `encode_result` put in the results arena.
    static LAST_SHARED: Cell<usize> = const { Cell::new(0) };
}

/// The worker sent an answer with blocks (`RETURNED_SHARED`).
pub(crate) fn sent_shared_answer() {
    WORKER.with_borrow_mut(|arenas| {
        if let Some(writer) = &mut arenas.results {
            writer.sent += 1;
        }
    });
}

/// Decode a call's arguments in the worker (the `cpu_bound` shim calls this).
#[doc(hidden)]
pub fn decode_args<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let args = WORKER.with_borrow(|arenas| arenas.args.clone());
    decoding_from(args.as_ref(), || codec::decode(bytes))
}

/// Encode a call's result in the worker (the `cpu_bound` shim calls this): its large blocks
/// go into the results arena when the call's answer may share them.
#[doc(hidden)]
pub fn encode_result<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let writer = ANSWER_MAY_SHARE
        .get()
        .then(|| WORKER.with_borrow_mut(|arenas| arenas.results.take()))
        .flatten();
    let Some(mut writer) = writer else {
        return codec::encode(value, out);
    };
    writer.start_over_if_settled();
    let sink = Sink::Results {
        writer,
        bytes: 0,
        used: false,
    };
    let (encoded, sink) = with_sink(sink, || codec::encode(value, out));
    let Sink::Results {
        writer,
        bytes,
        used,
    } = sink
    else {
        unreachable!("the sink put in is the one taken out")
    };
    WORKER.with_borrow_mut(|arenas| arenas.results = Some(writer));
    if encoded.is_ok() && used {
        LAST_SHARED.set(bytes);
    }
    encoded
}

/// Encode a call's `Vec` result in the worker (the `cpu_bound` shim calls this for a function
/// that returns a [`Bulk`](codec::Bulk) vector), as [`encode_result`]; a large vector whose
/// block went into the results arena is kept for the next call's arguments (see [`Spare`]).
#[doc(hidden)]
pub fn encode_vec_result<E: BulkElement>(
    value: Vec<E>,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let encoded = encode_result(&codec::Bulk(&value), out);
    if LAST_SHARED.get() > 0 {
        SPARE.with_borrow_mut(|spare| spare.keep(value));
    }
    encoded
}

/// The parent's view of one worker's results arena.
pub(crate) struct ResultsReader {
    region: Arc<Region>,
    /// Answers with blocks settled so far (only the worker's I/O thread counts them).
    settled: std::sync::atomic::AtomicU64,
}

impl ResultsReader {
    /// A results arena of `capacity` bytes (plus its header), or `None` where shared memory
    /// is not used or cannot be made.
    pub(crate) fn create(capacity: usize) -> Option<ResultsReader> {
        let region = Region::create("unsync-results", capacity.checked_add(HEADER)?, false).ok()?;
        Some(ResultsReader {
            region: Arc::new(region),
            settled: 0.into(),
        })
    }

    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// One more answer with blocks is settled: the worker may write over its blocks.
    pub(crate) fn settled_one(&self) {
        let settled = self.settled.fetch_add(1, Ordering::Relaxed) + 1;
        self.region.counter().store(settled, Ordering::Release);
    }

    #[cfg(unix)]
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.region.fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any offset and length a worker may write: a copy of exactly those bytes when they
        /// lie in the arena and are whole `u32`s, an error otherwise, never a panic.
        #[test]
        fn only_blocks_inside_the_arena_are_read(offset in 0..10_000_u64, len in 0..10_000_u64, wide in any::<bool>()) {
            let Some(results) = ResultsReader::create(4096) else { return Ok(()) };
            let (offset, len) = if wide { (offset << 50, len << 40) } else { (offset, len) };
            let size = (HEADER + 4096) as u64;
            let pattern: Vec<u8> = (0..size).map(|i| i as u8).collect();
            prop_assert!(results.region.write(0, &pattern));
            let taken = decoding_from(Some(results.region()), || take::<u32>(offset, len));
            let fits = offset.checked_add(len).is_some_and(|end| end <= size) && len % 4 == 0;
            match taken {
                Ok(values) => {
                    prop_assert!(fits);
                    let start = offset as usize;
                    prop_assert_eq!(bytemuck::cast_slice::<u32, u8>(&values), &pattern[start..start + len as usize]);
                }
                Err(_) => prop_assert!(!fits),
            }
        }
    }

    #[test]
    fn a_spare_is_taken_only_for_a_block_of_its_type_that_it_fits_without_much_room_to_spare() {
        const MIB: usize = 1 << 20;
        let mut spare = Spare::default();
        spare.keep(vec![0_u8; MIB]);
        assert!(spare.0.is_none(), "too small to be worth keeping");
        spare.keep(vec![0_u8; KEEP_RESIDENT + 1]);
        assert!(spare.0.is_none(), "larger than a worker keeps resident");

        let kept = vec![0_u64; MIB];
        let address = kept.as_ptr();
        spare.keep(kept);
        assert!(spare.take_fitting::<u8>(8 * MIB).is_none(), "another type");
        assert!(
            spare.take_fitting::<u64>(8 * MIB + 8).is_none(),
            "too small"
        );
        assert!(
            spare.take_fitting::<u64>(4 * MIB - 8).is_none(),
            "over twice as large"
        );
        let taken = spare.take_fitting::<u64>(4 * MIB).expect("fits");
        assert_eq!(taken.as_ptr(), address);
        assert!(spare.take_fitting::<u64>(4 * MIB).is_none(), "taken once");
    }

    #[cfg(all(target_os = "linux", not(unsync_portable)))]
    #[test]
    fn a_block_is_copied_into_the_spare_and_is_exactly_that_block() {
        let Some(results) = ResultsReader::create(6 << 20) else {
            return;
        };
        let pattern: Vec<u8> = (0..5 << 20).map(|i| (i % 251) as u8).collect();
        assert!(results.region.write(HEADER, &pattern));
        let spare = vec![0xAA_u8; 8 << 20];
        let address = spare.as_ptr();
        SPARE.with_borrow_mut(|kept| kept.keep(spare));
        let taken = decoding_from(Some(results.region()), || {
            take::<u8>(HEADER as u64, pattern.len() as u64)
        })
        .unwrap();
        assert_eq!(taken.as_ptr(), address, "copied into the spare");
        assert!(
            taken == pattern,
            "exactly the block, nothing of what the spare held"
        );
        // Nothing spare is left: the next block of that size is copied into a new vector.
        let again = decoding_from(Some(results.region()), || {
            take::<u8>(HEADER as u64, pattern.len() as u64)
        })
        .unwrap();
        assert_ne!(again.as_ptr(), address);
        assert!(again == pattern);
    }

    #[cfg(all(target_os = "linux", not(unsync_portable)))]
    #[test]
    fn blocks_go_to_the_arena_when_they_fit_and_in_the_frame_otherwise() {
        use super::super::codec::Bulk;
        let Some(arena) = ArgsArena::create(256 << 10) else {
            return;
        };
        let arena: &'static ArgsArena = Box::leak(Box::new(arena));
        let small = vec![1_u8; MIN_BLOCK - 1];
        let large = vec![2_u8; 200_000];
        let args = (Bulk(&small), Bulk(&large), 7_u32);
        let mut out = Vec::new();
        let blocks = encode_args(Some(arena), &args, &mut out).unwrap();
        assert_eq!(
            blocks.bytes(),
            large.len(),
            "only the large block is shared"
        );
        assert!(out.len() < small.len() + 64, "{}", out.len());
        // Mapped as a worker maps it: read-only, through a fd of its own.
        let fd = arena.reader.try_clone().unwrap();
        let reader =
            Arc::new(Region::inherit(std::os::fd::IntoRawFd::into_raw_fd(fd), false).unwrap());
        let (a, b, n): (Bulk<Vec<u8>>, Bulk<Vec<u8>>, u32) =
            decoding_from(Some(&reader), || codec::decode(&out)).unwrap();
        assert_eq!((a.0, b.0, n), (small.clone(), large.clone(), 7));
        // No room left for a second large block while the first is held: it goes inline.
        let mut again = Vec::new();
        let more = encode_args(Some(arena), &(Bulk(&large),), &mut again).unwrap();
        assert_eq!(more.bytes(), 0);
        assert!(again.len() > large.len());
        // Freed with its call: room again.
        drop(blocks);
        let mut third = Vec::new();
        assert_eq!(
            encode_args(Some(arena), &(Bulk(&large),), &mut third)
                .unwrap()
                .bytes(),
            large.len()
        );
    }

    #[test]
    fn a_shared_block_without_shared_memory_is_an_error() {
        assert!(take::<u8>(0, 1).is_err());
    }

    #[test]
    fn freed_ranges_merge_back_into_one() {
        let Some(arena) = ArgsArena::create(1 << 20) else {
            return;
        };
        let arena: &'static ArgsArena = Box::leak(Box::new(arena));
        let a = arena.allocate(1000).unwrap();
        let b = arena.allocate(300_000).unwrap();
        let c = arena.allocate(64).unwrap();
        assert_eq!((a, b), (0, aligned(1000)));
        assert!(arena.allocate(1 << 20).is_none(), "no room left for that");
        arena.release(b, 300_000);
        arena.release(a, 1000);
        arena.release(c, 64);
        assert_eq!(*crate::exec::lock(&arena.free), [(0, 1 << 20)].into());
        assert_eq!(arena.allocate(1 << 20), Some(0));
    }
}

//! The batch's way into the guest: a view of [`wit::Batch`] whose message records are lowered
//! into guest memory in one pass instead of field by field.
//!
//! Why: wasmtime's derived lowering of a record stores each field through
//! `LowerContext::get`, which looks the instance's memory up again (store slab, canonical
//! options, memory definition) and bounds-checks, and it recomputes the field offsets at run
//! time. A `message` record has 25 stores, so a batch of 32 spent more time there than the guest
//! took to read it (`sandbox-bench --profile-fresh 32` under `perf`: 18 % of the call, the
//! largest item). Here the list is allocated with the guest's `cabi_realloc` as wasmtime does,
//! the memory is looked up once, and every record is written at offsets computed once from the
//! canonical ABI.
//!
//! The batch's bytes ([`Data`]) go the same way: the guest's buffer is allocated once and every
//! body is copied into it straight from the pulled message, then the texts, so a body is copied
//! once on its way in, not into a host buffer first.
//!
//! Type safety is still wasmtime's: [`Records`] type-checks as `list<message>` and [`Data`] as
//! `list<u8>` against the component's own types, exactly as `wit::Message` and `Vec<u8>` do, and
//! [`BatchView`] derives the `batch` record. Only the byte layout of a `message` record is written
//! here; the guest tests that read every field (`tests.rs`, the `probe` plugin) are what check it.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Func, Lower, TypedFunc};
use wasmtime::{AsContext, ValRaw};

use super::bindings::rmq::listener::types as wit;
use super::convert::Encoded;

/// The `batch` record, borrowing the encoded messages (see `convert::batch`).
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct BatchView<'a> {
    pub messages: Records<'a>,
    pub data: Data<'a>,
}

impl<'a> BatchView<'a> {
    pub fn of(batch: &'a Encoded<'a>) -> Self {
        Self { messages: Records(&batch.messages), data: Data(batch) }
    }
}

/// `handler.consume` taking the batch as a [`BatchView`].
pub(crate) type ConsumeFunc<'a> = TypedFunc<
    (&'a wit::ConsumeContext, BatchView<'a>),
    (Result<Vec<wit::MessageOutcome>, wit::ListenerError>,),
>;

/// Set once a component's `consume` export passed wasmtime's type check as [`ConsumeFunc`]: the
/// check walks every field name and type of the WIT records (~4,000 instructions, 3 % of a
/// call at batch 1), and a component's types cannot change, so one check per plugin version
/// does.
#[derive(Debug, Default)]
pub(crate) struct TypeChecked(OnceLock<()>);

/// `func` (an instance's `consume` export) as a [`ConsumeFunc`]: type-checked on the first call
/// of a plugin version, trusted after that.
pub(crate) fn consume_func<'a>(
    func: Func,
    store: impl AsContext,
    checked: &TypeChecked,
) -> wasmtime::Result<ConsumeFunc<'a>> {
    if checked.0.get().is_some() {
        #[allow(unsafe_code, reason = "skips a type check this plugin version already passed")]
        // SAFETY: `checked` belongs to the plugin version whose component `func` was exported
        // by, and `func.typed` below succeeded for that component with these very types; the
        // types of a component's exports are fixed when it is compiled.
        return Ok(unsafe { TypedFunc::new_unchecked(func) });
    }
    let typed = func.typed(store)?;
    let _ = checked.0.set(());
    Ok(typed)
}

/// `list<message>`, lowered in one pass.
#[derive(Clone, Copy)]
pub(crate) struct Records<'a>(pub &'a [wit::Message]);

/// Byte offsets of a `message` record's fields in guest memory, in WIT order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    queue_offset: usize,
    born_timestamp: usize,
    store_timestamp: usize,
    reconsume_times: usize,
    topic: usize,
    msg_id: usize,
    offset_msg_id: usize,
    keys: usize,
    /// The `option<span>`: its discriminant byte here, the span at `tags + TAGS_PAYLOAD`.
    tags: usize,
    properties: usize,
    body: usize,
    born_host: usize,
    store_host: usize,
}

/// Offset of an `option<span>`'s payload from its discriminant: the span's alignment.
const TAGS_PAYLOAD: usize = <wit::Span as ComponentType>::ALIGN32 as usize;

impl Layout {
    /// The canonical ABI's layout of the record, field by field as wasmtime's derive computes it.
    fn of_message() -> Self {
        fn next<T: ComponentType>(offset: &mut usize) -> usize {
            T::ABI.next_field32_size(offset)
        }
        type Span = wit::Span;
        let mut at = 0;
        Self {
            queue_offset: next::<u64>(&mut at),
            born_timestamp: next::<u64>(&mut at),
            store_timestamp: next::<u64>(&mut at),
            reconsume_times: next::<u32>(&mut at),
            topic: next::<Span>(&mut at),
            msg_id: next::<Span>(&mut at),
            offset_msg_id: next::<Span>(&mut at),
            keys: next::<Span>(&mut at),
            tags: next::<Option<Span>>(&mut at),
            properties: next::<Span>(&mut at),
            body: next::<Span>(&mut at),
            born_host: next::<Span>(&mut at),
            store_host: next::<Span>(&mut at),
        }
    }

    /// Writes `m` into `out`, one record's bytes.
    fn write(&self, m: &wit::Message, out: &mut [u8]) {
        fn put<const N: usize>(out: &mut [u8], at: usize, bytes: [u8; N]) {
            out[at..at + N].copy_from_slice(&bytes);
        }
        fn span(out: &mut [u8], at: usize, s: wit::Span) {
            put(out, at, s.start.to_le_bytes());
            put(out, at + 4, s.len.to_le_bytes());
        }
        put(out, self.queue_offset, m.queue_offset.to_le_bytes());
        put(out, self.born_timestamp, m.born_timestamp.to_le_bytes());
        put(out, self.store_timestamp, m.store_timestamp.to_le_bytes());
        put(out, self.reconsume_times, m.reconsume_times.to_le_bytes());
        span(out, self.topic, m.topic);
        span(out, self.msg_id, m.msg_id);
        span(out, self.offset_msg_id, m.offset_msg_id);
        span(out, self.keys, m.keys);
        match m.tags {
            None => out[self.tags] = 0,
            Some(tags) => {
                out[self.tags] = 1;
                span(out, self.tags + TAGS_PAYLOAD, tags);
            }
        }
        span(out, self.properties, m.properties);
        span(out, self.body, m.body);
        span(out, self.born_host, m.born_host);
        span(out, self.store_host, m.store_host);
    }
}

/// Allocates `bytes` bytes aligned to `align` in the guest (its `cabi_realloc`, as wasmtime
/// does): the allocation's address and the guest memory it covers.
fn alloc<'m, T>(
    cx: &'m mut LowerContext<'_, T>,
    align: u32,
    bytes: usize,
) -> wasmtime::Result<(usize, &'m mut [u8])> {
    let ptr = cx.realloc(0, 0, align, bytes)?;
    // wasmtime checked that the guest's `realloc` answered with a range inside its memory.
    let dst = cx
        .as_slice_mut()
        .get_mut(ptr..)
        .and_then(|d| d.get_mut(..bytes))
        .ok_or_else(|| wasmtime::format_err!("realloc return: beyond end of memory"))?;
    Ok((ptr, dst))
}

/// Writes a list's `(pointer, length)` pair where wasmtime asks: as two i64 values (wasmtime's
/// "WRITEPTR64" convention) or as two little-endian u32 at `offset` in guest memory.
fn pair_to_flat(
    (ptr, len): (usize, usize),
    dst: &mut MaybeUninit<[ValRaw; 2]>,
) -> wasmtime::Result<()> {
    dst.write([ValRaw::i64(i64::try_from(ptr)?), ValRaw::i64(i64::try_from(len)?)]);
    Ok(())
}

fn pair_to_memory<T>(
    (ptr, len): (usize, usize),
    cx: &mut LowerContext<'_, T>,
    offset: usize,
) -> wasmtime::Result<()> {
    let pair = cx
        .as_slice_mut()
        .get_mut(offset..offset + 8)
        .ok_or_else(|| wasmtime::format_err!("list pointer pair beyond end of memory"))?;
    pair[..4].copy_from_slice(&u32::try_from(ptr)?.to_le_bytes());
    pair[4..].copy_from_slice(&u32::try_from(len)?.to_le_bytes());
    Ok(())
}

impl Records<'_> {
    /// Allocates the list in the guest and writes every record: `(pointer, length)`.
    fn store<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<(usize, usize)> {
        let size = <wit::Message as ComponentType>::SIZE32;
        let bytes = self
            .0
            .len()
            .checked_mul(size)
            .ok_or_else(|| wasmtime::format_err!("size overflow copying a list"))?;
        let (ptr, dst) = alloc(cx, <wit::Message as ComponentType>::ALIGN32, bytes)?;
        let layout = Layout::of_message();
        for (out, m) in dst.chunks_exact_mut(size).zip(self.0) {
            layout.write(m, out);
        }
        Ok((ptr, self.0.len()))
    }
}

/// The batch's `data: list<u8>`: every body straight from its message, then the texts (the
/// layout `convert::batch` gave the spans).
#[derive(Clone, Copy)]
pub(crate) struct Data<'a>(&'a Encoded<'a>);

impl Data<'_> {
    /// Allocates the list in the guest and copies the bytes in: `(pointer, length)`.
    fn store<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<(usize, usize)> {
        let len = self.0.data_len();
        let (ptr, mut dst) = alloc(cx, 1, len)?;
        for m in self.0.bodies {
            let (head, rest) = dst.split_at_mut(m.body.len());
            head.copy_from_slice(&m.body);
            dst = rest;
        }
        dst.copy_from_slice(&self.0.text);
        Ok((ptr, len))
    }
}

/// Makes `$ty` — whose `store` allocates a `list<$elem>` in the guest, writes it, and answers
/// its pointer and length — lowerable where the component expects that list.
macro_rules! lowered_as_list {
    ($ty:ty, $elem:ty) => {
        #[allow(
            unsafe_code,
            reason = "wasmtime's ComponentType is an unsafe trait: the impl must describe the \
                      type truly"
        )]
        // SAFETY: `$ty` is lowered as `list<$elem>`: `Lower` is the pointer-and-length pair
        // every list flattens to, the ABI is the list's, and the type check is `[$elem]`'s, so
        // a component whose parameter is of another type is refused before any call.
        unsafe impl ComponentType for $ty {
            type Lower = [ValRaw; 2];

            const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

            fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
                <[$elem] as ComponentType>::typecheck(ty, types)
            }
        }

        #[allow(unsafe_code, reason = "wasmtime's Lower is an unsafe trait")]
        // SAFETY: writes what wasmtime's lowering of `[$elem]` writes: the list into memory the
        // guest's `realloc` returned (bounds-checked in `alloc`), and the pointer pair.
        unsafe impl Lower for $ty {
            fn linear_lower_to_flat<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                _ty: InterfaceType,
                dst: &mut MaybeUninit<[ValRaw; 2]>,
            ) -> wasmtime::Result<()> {
                pair_to_flat(self.store(cx)?, dst)
            }

            fn linear_lower_to_memory<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                _ty: InterfaceType,
                offset: usize,
            ) -> wasmtime::Result<()> {
                pair_to_memory(self.store(cx)?, cx, offset)
            }
        }
    };
}

lowered_as_list!(Records<'_>, wit::Message);
lowered_as_list!(Data<'_>, u8);

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout the canonical ABI gives the WIT `message` record (spans are two u32, the
    /// `option<span>` a byte and a 4-aligned span): written out once by hand, so a change of
    /// the record that the offsets do not follow shows up here as well as in the guest tests.
    #[test]
    fn the_message_layout_is_the_canonical_abis() {
        let l = Layout::of_message();
        assert_eq!(
            l,
            Layout {
                queue_offset: 0,
                born_timestamp: 8,
                store_timestamp: 16,
                reconsume_times: 24,
                topic: 28,
                msg_id: 36,
                offset_msg_id: 44,
                keys: 52,
                tags: 60,
                properties: 72,
                body: 80,
                born_host: 88,
                store_host: 96,
            }
        );
        assert_eq!(<wit::Message as ComponentType>::SIZE32, 104);
        assert_eq!(TAGS_PAYLOAD, 4);
    }

    #[test]
    fn a_record_is_written_little_endian_at_its_offsets() {
        let s = |start, len| wit::Span { start, len };
        let m = wit::Message {
            queue_offset: 0x0102_0304_0506_0708,
            born_timestamp: 2,
            store_timestamp: 3,
            reconsume_times: 4,
            topic: s(5, 6),
            msg_id: s(7, 8),
            offset_msg_id: s(9, 10),
            keys: s(11, 12),
            tags: Some(s(13, 14)),
            properties: s(15, 16),
            body: s(17, 18),
            born_host: s(19, 20),
            store_host: s(21, 22),
        };
        let mut out = [0xAAu8; 104];
        Layout::of_message().write(&m, &mut out);
        let u32_at = |at: usize| u32::from_le_bytes(out[at..at + 4].try_into().unwrap());
        assert_eq!(out[..8], 0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(u32_at(24), 4);
        assert_eq!((u32_at(28), u32_at(32)), (5, 6));
        assert_eq!(out[60], 1, "some(tags)");
        assert_eq!((u32_at(64), u32_at(68)), (13, 14));
        assert_eq!((u32_at(96), u32_at(100)), (21, 22));
        let untagged = wit::Message { tags: None, ..m };
        Layout::of_message().write(&untagged, &mut out);
        assert_eq!(out[60], 0, "none");
    }
}

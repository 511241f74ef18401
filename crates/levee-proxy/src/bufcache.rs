//! The buffers of cleartext HTTP/1.1 connections (`http1`) and each worker
//! thread's spares of them. A connection borrows a set (read buffer, write
//! buffer, header field slots) while it has a request to read or answer and
//! gives it back as soon as it waits for the next one: an idle keep-alive
//! connection holds no buffer at all (NGINX frees its buffers on keep-alive
//! the same way), and a busy one reuses memory instead of freeing and
//! allocating it per request. Spares are bounded per thread, and only sets
//! of ordinary size are kept.

use bytes::BytesMut;
use levee_h1::head::Field;
use std::cell::RefCell;

/// Sets kept per worker thread. A thread needs about as many as it has
/// connections waiting for their next request at once; beyond that a set
/// is freed, and allocated again when needed.
const KEEP: usize = 64;

/// Buffers grown past this (a large head, a batch of a large answer) are
/// freed rather than kept: a kept set should cost a few KiB.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Field slots kept (a request with more grows its own).
const KEEP_FIELDS: usize = 128;

/// A set as kept: no `Drop`, so the thread's list can free its own.
struct Spare {
    read: BytesMut,
    write: Vec<u8>,
    fields: Vec<Field>,
}

thread_local! {
    static SPARES: RefCell<Vec<Spare>> = const { RefCell::new(Vec::new()) };
}

/// A connection's buffers, borrowed from the thread's spares; given back on
/// `release` and when dropped.
#[derive(Default)]
pub(crate) struct Buffers {
    /// What was read and not yet consumed.
    pub(crate) read: BytesMut,
    /// The answer's head and body frames gathered for one write.
    pub(crate) write: Vec<u8>,
    /// Where the codec puts a head's fields.
    pub(crate) fields: Vec<Field>,
}

impl Buffers {
    /// A set from this thread's spares, or empty ones (which allocate when
    /// first used).
    pub(crate) fn lend() -> Self {
        let spare = SPARES.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        match spare {
            Some(Spare {
                read,
                write,
                fields,
            }) => Self {
                read,
                write,
                fields,
            },
            None => Self::default(),
        }
    }

    /// Whether nothing is held (released, or never used).
    #[cfg(test)]
    fn is_released(&self) -> bool {
        self.read.capacity() == 0 && self.write.capacity() == 0 && self.fields.capacity() == 0
    }

    /// Gives the buffers back (what was unread is dropped: call this only
    /// with `read` empty); `self` is left holding nothing.
    pub(crate) fn release(&mut self) {
        let spare = Spare {
            read: std::mem::take(&mut self.read),
            write: std::mem::take(&mut self.write),
            fields: std::mem::take(&mut self.fields),
        };
        keep(spare);
    }
}

/// Keeps `spare` for the next connection on this thread, if it is worth
/// keeping and there is room. A read buffer still shared with a request's
/// bytes is kept too: its next `reserve` allocates afresh unless they are
/// gone by then.
fn keep(mut spare: Spare) {
    if spare.read.capacity() == 0 && spare.write.capacity() == 0 {
        return;
    }
    if spare.read.capacity() > KEEP_CAPACITY
        || spare.write.capacity() > KEEP_CAPACITY
        || spare.fields.capacity() > KEEP_FIELDS
    {
        return;
    }
    spare.read.clear();
    spare.write.clear();
    spare.fields.clear();
    let _ = SPARES.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < KEEP {
            s.push(spare);
        }
    });
}

impl Drop for Buffers {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_set_is_lent_again_on_the_same_thread() {
        let mut b = Buffers::lend();
        b.read.reserve(4096);
        b.write.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let read_at = b.read.as_ptr();
        b.release();
        assert!(b.is_released());
        let again = Buffers::lend();
        assert_eq!(again.read.as_ptr(), read_at);
        assert!(again.read.capacity() >= 4096);
        assert!(again.write.is_empty() && again.write.capacity() > 0);
    }

    #[test]
    fn large_buffers_are_freed_not_kept() {
        SPARES.with(|s| s.borrow_mut().clear());
        let mut b = Buffers::lend();
        b.write.reserve(KEEP_CAPACITY + 1);
        b.release();
        assert!(Buffers::lend().is_released());
    }

    #[test]
    fn spares_are_bounded() {
        let sets: Vec<Buffers> = (0..KEEP + 8)
            .map(|_| {
                let mut b = Buffers::lend();
                b.read.reserve(64);
                b
            })
            .collect();
        drop(sets);
        let kept = SPARES.with(|s| s.borrow().len());
        assert_eq!(kept, KEEP);
    }
}

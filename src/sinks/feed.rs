//! A bounded, drop-oldest queue from the line to one plant-side sink. The line's side
//! never waits: when the sink falls behind (a slow broker, a hung browser), the oldest
//! event is dropped and counted, so the newest state always gets through.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

struct Shared<T> {
    queue: Mutex<Inner<T>>,
    ready: Condvar,
    dropped: AtomicU64,
    capacity: usize,
}

struct Inner<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// The line's end: `push` never blocks.
pub struct FeedSender<T> {
    shared: Arc<Shared<T>>,
}

/// The sink's end.
pub struct FeedReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// What a wait on the feed brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv<T> {
    Item(T),
    /// Nothing arrived in time.
    Timeout,
    /// The line closed the feed and everything in it has been taken.
    Closed,
}

/// A feed holding at most `capacity` events (at least 1).
pub fn feed<T>(capacity: usize) -> (FeedSender<T>, FeedReceiver<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Inner {
            items: VecDeque::with_capacity(capacity.max(1)),
            closed: false,
        }),
        ready: Condvar::new(),
        dropped: AtomicU64::new(0),
        capacity: capacity.max(1),
    });
    (
        FeedSender {
            shared: Arc::clone(&shared),
        },
        FeedReceiver { shared },
    )
}

impl<T> FeedSender<T> {
    /// Queues `item`; if the feed is full, the oldest event makes room (and is counted).
    pub fn push(&self, item: T) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.items.len() == self.shared.capacity {
            q.items.pop_front();
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.items.push_back(item);
        drop(q);
        self.shared.ready.notify_one();
    }

    /// Events dropped so far because the sink was behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl<T> Drop for FeedSender<T> {
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.shared.ready.notify_all();
    }
}

impl<T> FeedReceiver<T> {
    /// The oldest waiting event, waiting at most `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Recv<T> {
        let q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        let (mut q, _) = self
            .shared
            .ready
            .wait_timeout_while(q, timeout, |q| q.items.is_empty() && !q.closed)
            .unwrap_or_else(|e| e.into_inner());
        match q.items.pop_front() {
            Some(item) => Recv::Item(item),
            None if q.closed => Recv::Closed,
            None => Recv::Timeout,
        }
    }

    /// Events dropped so far because this sink was behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_feed_drops_the_oldest_and_counts_it() {
        let (tx, rx) = feed(3);
        for i in 0..5 {
            tx.push(i);
        }
        assert_eq!(tx.dropped(), 2);
        let got: Vec<_> = (0..3).map(|_| rx.recv_timeout(Duration::ZERO)).collect();
        assert_eq!(got, [Recv::Item(2), Recv::Item(3), Recv::Item(4)]);
        assert_eq!(rx.recv_timeout(Duration::ZERO), Recv::Timeout);
    }

    #[test]
    fn a_closed_feed_gives_what_it_holds_then_says_closed() {
        let (tx, rx) = feed(4);
        tx.push("last state");
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::ZERO), Recv::Item("last state"));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Recv::Closed);
    }
}

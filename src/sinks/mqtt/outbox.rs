//! Store and forward, without a broker or a clock: the results not yet acknowledged, in
//! order, and which MQTT packet id stands for which message.
//!
//! A result is *queued* until it is handed to the client, then *in flight* until the
//! broker's PUBACK. A lost connection puts the ones in flight back at the head of the
//! queue, in order, to be sent again with the same sequence number (a consumer that
//! saw one before its PUBACK was lost drops the repeat by `run_id` and `seq`). At most
//! `capacity` results wait in the queue; one more drops the oldest, counted.

use std::collections::{HashMap, VecDeque};

/// One result message waiting for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Counters over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Results put in.
    pub accepted: u64,
    /// Acknowledged by the broker.
    pub sent: u64,
    /// Given up unacknowledged: the queue was full.
    pub dropped: u64,
    /// Put back after a lost connection, to be sent again.
    pub resent: u64,
    /// The most results held at once (queued and in flight).
    pub most_buffered: u64,
}

#[derive(Debug)]
pub struct Outbox {
    capacity: usize,
    queued: VecDeque<Pending>,
    in_flight: VecDeque<Pending>,
    pub counts: OutboxCounts,
}

impl Outbox {
    /// At most `capacity` (at least 1) results wait in the queue.
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            capacity: capacity.max(1),
            queued: VecDeque::new(),
            in_flight: VecDeque::new(),
            counts: OutboxCounts::default(),
        }
    }

    /// Queues a result; a full queue drops its oldest.
    pub fn push(&mut self, p: Pending) {
        self.counts.accepted += 1;
        self.queued.push_back(p);
        self.trim();
        self.counts.most_buffered = self.counts.most_buffered.max(self.buffered() as u64);
    }

    fn trim(&mut self) {
        while self.queued.len() > self.capacity {
            self.queued.pop_front();
            self.counts.dropped += 1;
        }
    }

    /// The next result to hand to the client, if fewer than `max_in_flight` await their
    /// acknowledgement: it is in flight from now on.
    pub fn next(&mut self, max_in_flight: usize) -> Option<&Pending> {
        if self.in_flight.len() >= max_in_flight {
            return None;
        }
        let p = self.queued.pop_front()?;
        self.in_flight.push_back(p);
        self.in_flight.back()
    }

    /// The broker acknowledged `seq`. False if it was not in flight (a late ack).
    pub fn acked(&mut self, seq: u64) -> bool {
        match self.in_flight.iter().position(|p| p.seq == seq) {
            Some(i) => {
                self.in_flight.remove(i);
                self.counts.sent += 1;
                true
            }
            None => false,
        }
    }

    /// The connection is gone: what was in flight goes back to the head of the queue, in
    /// order; if that overfills the queue, the oldest are dropped.
    pub fn connection_lost(&mut self) {
        let back = self.in_flight.len() as u64;
        while let Some(p) = self.in_flight.pop_back() {
            self.queued.push_front(p);
        }
        self.counts.resent += back;
        self.trim();
    }

    /// Results held: queued and in flight.
    pub fn buffered(&self) -> usize {
        self.queued.len() + self.in_flight.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffered() == 0
    }
}

/// What a publish request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Result(u64),
    State,
    Online,
    Offline,
}

/// Which packet id stands for which message, on one connection. The client writes
/// requests in the order they were made and reports each with its packet id
/// (`Outgoing::Publish(pkid)`); the broker's PUBACK names the id. A new connection
/// starts a new tracker (its predecessor's requests die with it).
#[derive(Debug, Default)]
pub struct Tracker {
    requested: VecDeque<Tag>,
    by_pkid: HashMap<u16, Tag>,
}

impl Tracker {
    /// A publish was handed to the client.
    pub fn requested(&mut self, tag: Tag) {
        self.requested.push_back(tag);
    }

    /// The client wrote the oldest request with packet id `pkid`.
    pub fn written(&mut self, pkid: u16) -> Option<Tag> {
        let tag = self.requested.pop_front()?;
        self.by_pkid.insert(pkid, tag);
        Some(tag)
    }

    /// The broker acknowledged `pkid`.
    pub fn acked(&mut self, pkid: u16) -> Option<Tag> {
        self.by_pkid.remove(&pkid)
    }

    /// Requests not yet acknowledged, written or not.
    pub fn outstanding(&self) -> usize {
        self.requested.len() + self.by_pkid.len()
    }

    /// Whether a request with this tag is outstanding.
    pub fn has(&self, tag: Tag) -> bool {
        self.requested.contains(&tag) || self.by_pkid.values().any(|t| *t == tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(seq: u64) -> Pending {
        Pending {
            seq,
            payload: format!("{{\"seq\":{seq}}}").into_bytes(),
        }
    }

    fn send_all(o: &mut Outbox, max: usize) -> Vec<u64> {
        std::iter::from_fn(|| o.next(max).map(|p| p.seq)).collect()
    }

    #[test]
    fn results_go_out_in_order_as_acks_make_room() {
        let mut o = Outbox::new(100);
        (1..=5).for_each(|s| o.push(p(s)));
        assert_eq!(send_all(&mut o, 2), [1, 2]);
        assert!(o.acked(1));
        assert_eq!(send_all(&mut o, 2), [3]);
        assert!(o.acked(2) && o.acked(3));
        assert_eq!(send_all(&mut o, 2), [4, 5]);
        assert!(o.acked(4) && o.acked(5));
        assert!(!o.acked(5), "a second ack for one result counts once");
        assert!(o.is_empty());
        assert_eq!(o.counts.sent, 5);
        assert_eq!(o.counts.dropped, 0);
    }

    #[test]
    fn a_lost_connection_sends_the_unacknowledged_again_in_order() {
        let mut o = Outbox::new(100);
        (1..=6).for_each(|s| o.push(p(s)));
        assert_eq!(send_all(&mut o, 4), [1, 2, 3, 4]);
        assert!(o.acked(1));
        o.connection_lost();
        assert_eq!(o.counts.resent, 3);
        assert_eq!(o.buffered(), 5);
        assert_eq!(send_all(&mut o, 10), [2, 3, 4, 5, 6]);
    }

    #[test]
    fn beyond_the_buffer_the_oldest_are_dropped_and_counted() {
        // The broker is away: nothing can be sent, 10 results arrive for a buffer of 4.
        let mut o = Outbox::new(4);
        (1..=10).for_each(|s| o.push(p(s)));
        assert_eq!(o.counts.dropped, 6);
        assert_eq!(o.counts.most_buffered, 4);
        assert_eq!(send_all(&mut o, 10), [7, 8, 9, 10]);
        // In flight when the connection goes, with two more queued: the queue overfills.
        o.push(p(11));
        o.push(p(12));
        o.connection_lost();
        assert_eq!(o.counts.dropped, 8, "7 and 8 are the oldest");
        assert_eq!(send_all(&mut o, 10), [9, 10, 11, 12]);
        assert_eq!(o.counts.accepted, 12);
    }

    #[test]
    fn no_sequence_number_is_sent_twice_while_in_flight_nor_skipped() {
        // Random-ish interleaving of pushes, sends, acks and losses: every sequence number
        // leaves the outbox exactly once as acknowledged or dropped.
        let mut o = Outbox::new(8);
        let (mut next_seq, mut acked, mut in_flight) = (1u64, Vec::new(), VecDeque::new());
        for step in 0u64..2000 {
            match (step * 7919) % 5 {
                0 | 1 => {
                    o.push(p(next_seq));
                    next_seq += 1;
                }
                2 => {
                    if let Some(q) = o.next(3) {
                        assert!(!in_flight.contains(&q.seq));
                        in_flight.push_back(q.seq);
                    }
                }
                3 => {
                    if let Some(s) = in_flight.pop_front() {
                        assert!(o.acked(s));
                        acked.push(s);
                    }
                }
                _ => {
                    if step % 3 == 0 {
                        o.connection_lost();
                        in_flight.clear();
                    }
                }
            }
        }
        let mut sorted = acked.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), acked.len(), "acknowledged twice");
        assert_eq!(acked, sorted, "acknowledged out of order");
        assert_eq!(
            o.counts.sent + o.counts.dropped + o.buffered() as u64,
            next_seq - 1,
            "every result is sent, dropped or still held"
        );
    }

    #[test]
    fn the_tracker_names_each_packet_id() {
        let mut t = Tracker::default();
        t.requested(Tag::Online);
        t.requested(Tag::Result(1));
        t.requested(Tag::Result(2));
        assert_eq!(t.written(1), Some(Tag::Online));
        assert_eq!(t.written(2), Some(Tag::Result(1)));
        assert!(t.has(Tag::Result(2)));
        assert_eq!(t.outstanding(), 3);
        assert_eq!(t.acked(2), Some(Tag::Result(1)));
        assert_eq!(t.acked(2), None);
        assert_eq!(t.written(3), Some(Tag::Result(2)));
        assert_eq!(t.acked(1), Some(Tag::Online));
        assert_eq!(t.acked(3), Some(Tag::Result(2)));
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.written(4), None);
    }
}

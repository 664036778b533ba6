//! Credit-based flow control (Flink's network stack since 1.5). Sans-IO.
//!
//! A receiver grants credits, one per free buffer: exclusive buffers per channel plus a
//! floating pool per gate that goes to channels announcing a backlog. A sender with no credit
//! holds its buffers; its output queue fills, the task stops producing, and backpressure
//! travels up to the source. Events need no credit: they are small and must not deadlock
//! behind data.

use crate::ids::ChannelIndex;
use crate::limits::{CREDITS_EXCLUSIVE_PER_CHANNEL, CREDITS_FLOATING_PER_GATE};
use std::collections::VecDeque;

/// Something queued on an output channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing<B, E> {
    /// A data buffer: needs one credit.
    Buffer(B),
    /// An in-band event: needs none.
    Event(E),
}

/// The sending side of one channel.
#[derive(Clone, Debug)]
pub struct CreditSender<B, E> {
    credit: u32,
    queue: VecDeque<Outgoing<B, E>>,
    buffers_queued: usize,
}

impl<B, E> Default for CreditSender<B, E> {
    fn default() -> Self {
        CreditSender {
            credit: 0,
            queue: VecDeque::new(),
            buffers_queued: 0,
        }
    }
}

impl<B, E> CreditSender<B, E> {
    /// Queues a data buffer.
    pub fn push_buffer(&mut self, buffer: B) {
        self.queue.push_back(Outgoing::Buffer(buffer));
        self.buffers_queued += 1;
    }

    /// Queues an event behind everything queued before it.
    pub fn push_event(&mut self, event: E) {
        self.queue.push_back(Outgoing::Event(event));
    }

    /// Queues a priority event ahead of everything queued (an unaligned barrier) and returns
    /// copies of the buffers it overtook.
    pub fn push_priority_event(&mut self, event: E) -> Vec<B>
    where
        B: Clone,
    {
        let overtaken = self.buffers_before(self.queue.len());
        self.queue.push_front(Outgoing::Event(event));
        overtaken
    }

    /// Moves the first queued event that `matches` to the front, as `convert` makes it (an
    /// aligned barrier that timed out), and returns copies of the buffers it overtook; `None`
    /// if no such event is queued.
    pub fn prioritize(
        &mut self,
        matches: impl Fn(&E) -> bool,
        convert: impl FnOnce(E) -> E,
    ) -> Option<Vec<B>>
    where
        B: Clone,
    {
        let position = self.position(matches)?;
        let overtaken = self.buffers_before(position);
        let Some(Outgoing::Event(event)) = self.queue.remove(position) else {
            unreachable!("position found an event");
        };
        self.queue.push_front(Outgoing::Event(convert(event)));
        Some(overtaken)
    }

    /// Whether an event that `matches` is still queued.
    pub fn has_event(&self, matches: impl Fn(&E) -> bool) -> bool {
        self.position(matches).is_some()
    }

    /// Puts restored buffers (output channel state) ahead of everything.
    pub fn restore(&mut self, buffers: Vec<B>) {
        assert!(
            self.queue.is_empty(),
            "channel state is restored before any output"
        );
        self.buffers_queued += buffers.len();
        self.queue.extend(buffers.into_iter().map(Outgoing::Buffer));
    }

    fn position(&self, matches: impl Fn(&E) -> bool) -> Option<usize> {
        self.queue
            .iter()
            .position(|item| matches!(item, Outgoing::Event(event) if matches(event)))
    }

    fn buffers_before(&self, position: usize) -> Vec<B>
    where
        B: Clone,
    {
        self.queue
            .range(..position)
            .filter_map(|item| match item {
                Outgoing::Buffer(buffer) => Some(buffer.clone()),
                Outgoing::Event(_) => None,
            })
            .collect()
    }

    /// The receiver granted `credit` more buffers.
    pub fn on_credit(&mut self, credit: u32) {
        assert!(credit > 0);
        self.credit = self
            .credit
            .checked_add(credit)
            .expect("credit stays far below u32::MAX");
    }

    /// The next item that may be sent now, with the data buffers still queued behind it
    /// (the backlog the receiver uses to lend floating buffers).
    #[must_use]
    pub fn poll_send(&mut self) -> Option<(Outgoing<B, E>, u32)> {
        match self.queue.front()? {
            Outgoing::Buffer(_) if self.credit == 0 => return None,
            Outgoing::Buffer(_) => {
                self.credit -= 1;
                self.buffers_queued -= 1;
            }
            Outgoing::Event(_) => {}
        }
        let item = self.queue.pop_front().expect("front exists");
        Some((item, self.buffers_queued as u32))
    }

    /// Data buffers waiting for credit.
    pub fn buffers_queued(&self) -> usize {
        self.buffers_queued
    }

    /// Credits held.
    pub fn credit(&self) -> u32 {
        self.credit
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct ChannelCredit {
    floating: u32,
    in_use: u32,
    backlog: u32,
}

impl ChannelCredit {
    fn granted(&self) -> u32 {
        CREDITS_EXCLUSIVE_PER_CHANNEL + self.floating
    }

    fn credit_at_sender(&self) -> u32 {
        self.granted() - self.in_use
    }
}

/// A sender sent more buffers than it had credit for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditViolation {
    /// The channel.
    pub channel: ChannelIndex,
}

/// The receiving side of one input gate.
#[derive(Clone, Debug)]
pub struct CreditReceiver {
    channels: Vec<ChannelCredit>,
    floating_available: u32,
    grants: VecDeque<(ChannelIndex, u32)>,
}

impl CreditReceiver {
    /// A gate of `channel_count` channels; the exclusive credits are granted at once.
    pub fn new(channel_count: usize) -> Self {
        assert!(channel_count > 0);
        let grants = (0..channel_count)
            .map(|index| (ChannelIndex(index as u16), CREDITS_EXCLUSIVE_PER_CHANNEL))
            .collect();
        CreditReceiver {
            channels: vec![ChannelCredit::default(); channel_count],
            floating_available: CREDITS_FLOATING_PER_GATE,
            grants,
        }
    }

    /// A buffer arrived on `channel`, announcing `backlog` more queued at the sender.
    pub fn on_buffer_received(
        &mut self,
        channel: ChannelIndex,
        backlog: u32,
    ) -> Result<(), CreditViolation> {
        let state = &mut self.channels[channel.0 as usize];
        if state.in_use >= state.granted() {
            return Err(CreditViolation { channel });
        }
        state.in_use += 1;
        state.backlog = backlog;
        self.lend_floating();
        Ok(())
    }

    /// The task consumed a buffer of `channel`: the buffer is free again.
    pub fn on_buffer_consumed(&mut self, channel: ChannelIndex) {
        let state = &mut self.channels[channel.0 as usize];
        assert!(
            state.in_use > 0,
            "consumed a buffer that was never received"
        );
        state.in_use -= 1;
        if state.floating > 0 && state.backlog < state.credit_at_sender() + 1 {
            // The sender does not need this buffer: it goes back to the pool.
            state.floating -= 1;
            self.floating_available += 1;
        } else {
            self.grants.push_back((channel, 1));
        }
        self.lend_floating();
        assert!(self.floating_total() + self.floating_available == CREDITS_FLOATING_PER_GATE);
    }

    fn lend_floating(&mut self) {
        for (index, state) in self.channels.iter_mut().enumerate() {
            while self.floating_available > 0 && state.backlog > state.credit_at_sender() {
                state.floating += 1;
                self.floating_available -= 1;
                self.grants.push_back((ChannelIndex(index as u16), 1));
            }
        }
    }

    fn floating_total(&self) -> u32 {
        self.channels.iter().map(|c| c.floating).sum()
    }

    /// The next credit grant to send: (channel, credits).
    #[must_use]
    pub fn poll_grant(&mut self) -> Option<(ChannelIndex, u32)> {
        self.grants.pop_front()
    }

    /// Puts back a grant that could not be sent yet (the channel is not connected).
    pub fn requeue_grant(&mut self, channel: ChannelIndex, credit: u32) {
        self.grants.push_back((channel, credit));
    }

    /// Buffers received and not yet consumed, over all channels.
    pub fn buffers_in_use(&self) -> u32 {
        self.channels.iter().map(|c| c.in_use).sum()
    }
}

#[cfg(test)]
mod priority_tests {
    use super::*;

    #[test]
    fn a_priority_event_overtakes_queued_buffers_and_reports_them() {
        let mut sender: CreditSender<u32, &str> = CreditSender::default();
        sender.push_buffer(1);
        sender.push_event("aligned-barrier");
        sender.push_buffer(2);
        assert_eq!(sender.push_priority_event("unaligned-barrier"), vec![1, 2]);
        assert_eq!(
            sender.poll_send(),
            Some((Outgoing::Event("unaligned-barrier"), 2))
        );
        // A queued event pulled forward overtakes only what was ahead of it.
        assert_eq!(
            sender.prioritize(|e| *e == "aligned-barrier", |_| "converted"),
            Some(vec![1])
        );
        assert!(!sender.has_event(|e| *e == "aligned-barrier"));
        assert_eq!(sender.poll_send(), Some((Outgoing::Event("converted"), 2)));
        assert_eq!(sender.poll_send(), None, "buffers still need credit");
        sender.on_credit(2);
        assert_eq!(sender.poll_send(), Some((Outgoing::Buffer(1), 1)));
        assert_eq!(sender.poll_send(), Some((Outgoing::Buffer(2), 0)));
        assert_eq!(sender.prioritize(|_| true, |e| e), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_without_credit_holds_buffers_but_not_events() {
        let mut sender: CreditSender<u32, &str> = CreditSender::default();
        sender.push_buffer(1);
        assert_eq!(sender.poll_send(), None);
        sender.on_credit(1);
        sender.push_buffer(2);
        sender.push_event("barrier");
        assert_eq!(sender.poll_send(), Some((Outgoing::Buffer(1), 1)));
        assert_eq!(
            sender.poll_send(),
            None,
            "buffer 2 waits, and the event stays behind it"
        );
        sender.on_credit(1);
        assert_eq!(sender.poll_send(), Some((Outgoing::Buffer(2), 0)));
        assert_eq!(sender.poll_send(), Some((Outgoing::Event("barrier"), 0)));
    }

    #[test]
    fn receiver_grants_exclusive_credits_and_regrants_on_consume() {
        let mut receiver = CreditReceiver::new(2);
        let initial: Vec<_> = std::iter::from_fn(|| receiver.poll_grant()).collect();
        assert_eq!(initial, vec![(ChannelIndex(0), 2), (ChannelIndex(1), 2)]);
        receiver.on_buffer_received(ChannelIndex(0), 0).unwrap();
        receiver.on_buffer_received(ChannelIndex(0), 0).unwrap();
        assert_eq!(
            receiver.on_buffer_received(ChannelIndex(0), 0),
            Err(CreditViolation {
                channel: ChannelIndex(0)
            })
        );
        receiver.on_buffer_consumed(ChannelIndex(0));
        assert_eq!(receiver.poll_grant(), Some((ChannelIndex(0), 1)));
    }

    #[test]
    fn backlog_borrows_floating_buffers_which_return_when_idle() {
        let mut receiver = CreditReceiver::new(1);
        while receiver.poll_grant().is_some() {}
        receiver.on_buffer_received(ChannelIndex(0), 5).unwrap();
        let lent: u32 = std::iter::from_fn(|| receiver.poll_grant())
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            lent, 4,
            "backlog 5 with 1 exclusive credit left needs 4 floating"
        );
        receiver.on_buffer_received(ChannelIndex(0), 0).unwrap();
        receiver.on_buffer_consumed(ChannelIndex(0));
        receiver.on_buffer_consumed(ChannelIndex(0));
        assert_eq!(
            receiver.poll_grant(),
            None,
            "idle channel returns floating buffers to the pool"
        );
    }
}

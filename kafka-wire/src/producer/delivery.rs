//! Per-record delivery reports without per-record allocations.
//!
//! Every record of a batch shares the batch's one [`Completion`]; a record's
//! [`DeliveryFuture`] is that `Rc` plus the record's offset delta. When Kafka answers, the
//! batch is completed once and its waiting futures are woken. The waker list grows by
//! doubling, so a batch of 10,000 awaited records costs a handful of allocations, not 10,000.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::error::Error;

/// Where Kafka stored a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition.
    pub partition: i32,
    /// The record's offset, or -1 when Kafka did not say (acks=0, or a batch Kafka reported as
    /// a duplicate of one it already had).
    pub offset: i64,
    /// The log append time when the topic uses it, else -1 (the record's own timestamp
    /// applies).
    pub log_append_time: i64,
}

/// Kafka's answer for a whole batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchAck {
    pub base_offset: i64,
    pub log_append_time: i64,
}

#[derive(Debug)]
enum State {
    Waiting(Vec<Waker>),
    Done(Result<BatchAck, Error>),
}

/// The shared outcome of one batch.
#[derive(Debug)]
pub(crate) struct Completion {
    partition: i32,
    state: RefCell<State>,
}

impl Completion {
    pub(crate) fn new(partition: i32) -> Rc<Self> {
        Rc::new(Completion {
            partition,
            state: RefCell::new(State::Waiting(Vec::new())),
        })
    }

    /// Completes the batch and wakes every record waiting on it. Later calls are ignored.
    pub(crate) fn complete(&self, result: Result<BatchAck, Error>) {
        let wakers = {
            let mut state = self.state.borrow_mut();
            if matches!(*state, State::Done(_)) {
                return;
            }
            match std::mem::replace(&mut *state, State::Done(result)) {
                State::Waiting(w) => w,
                State::Done(_) => unreachable!("checked above"),
            }
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// Resolves to where Kafka stored one record, or why it could not.
///
/// Dropping it does not cancel the record: it is still delivered.
#[derive(Debug)]
#[must_use = "a delivery future tells whether Kafka accepted the record"]
pub struct DeliveryFuture {
    completion: Rc<Completion>,
    offset_delta: u32,
    /// Index of this future's waker in the batch's list, once registered.
    waker_slot: Option<usize>,
}

impl DeliveryFuture {
    pub(crate) fn new(completion: Rc<Completion>, offset_delta: u32) -> Self {
        DeliveryFuture {
            completion,
            offset_delta,
            waker_slot: None,
        }
    }

    /// The partition the record was appended to.
    pub fn partition(&self) -> i32 {
        self.completion.partition
    }

    /// The outcome, if Kafka has answered already.
    pub fn try_result(&self) -> Option<Result<RecordMetadata, Error>> {
        match &*self.completion.state.borrow() {
            State::Waiting(_) => None,
            State::Done(r) => Some(self.metadata(r)),
        }
    }

    fn metadata(&self, result: &Result<BatchAck, Error>) -> Result<RecordMetadata, Error> {
        match result {
            Ok(ack) => Ok(RecordMetadata {
                partition: self.completion.partition,
                offset: if ack.base_offset < 0 {
                    -1
                } else {
                    ack.base_offset + i64::from(self.offset_delta)
                },
                log_append_time: ack.log_append_time,
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut state = this.completion.state.borrow_mut();
        match &mut *state {
            State::Done(r) => {
                let r = r.clone();
                drop(state);
                Poll::Ready(this.metadata(&r))
            }
            State::Waiting(wakers) => {
                match this.waker_slot {
                    Some(i) if !wakers[i].will_wake(cx.waker()) => wakers[i] = cx.waker().clone(),
                    Some(_) => {}
                    None => {
                        this.waker_slot = Some(wakers.len());
                        wakers.push(cx.waker().clone());
                    }
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    #[test]
    fn every_record_of_a_batch_gets_its_own_offset() {
        let c = Completion::new(3);
        let mut futures: Vec<_> = (0..5).map(|d| DeliveryFuture::new(c.clone(), d)).collect();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        for f in &mut futures {
            assert!(Pin::new(f).poll(&mut cx).is_pending());
        }
        c.complete(Ok(BatchAck {
            base_offset: 100,
            log_append_time: -1,
        }));
        for (i, f) in futures.iter_mut().enumerate() {
            match Pin::new(f).poll(&mut cx) {
                Poll::Ready(Ok(m)) => {
                    assert_eq!((m.partition, m.offset), (3, 100 + i as i64))
                }
                other => panic!("not delivered: {other:?}"),
            }
        }
    }

    #[test]
    fn errors_reach_every_record_and_first_completion_wins() {
        let c = Completion::new(0);
        let f = DeliveryFuture::new(c.clone(), 1);
        c.complete(Err(Error::Closed));
        c.complete(Ok(BatchAck {
            base_offset: 1,
            log_append_time: -1,
        }));
        assert!(matches!(f.try_result(), Some(Err(Error::Closed))));
    }

    #[test]
    fn unknown_base_offset_reports_minus_one() {
        let c = Completion::new(0);
        let f = DeliveryFuture::new(c.clone(), 7);
        c.complete(Ok(BatchAck {
            base_offset: -1,
            log_append_time: -1,
        }));
        assert_eq!(f.try_result().unwrap().unwrap().offset, -1);
    }
}

//! A shard-local gate: tasks wait until it opens; opening wakes them all at once (instead of
//! thousands of connections polling a flag with timers).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
struct Inner {
    open: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

/// Cloneable handle to one gate.
#[derive(Debug, Default, Clone)]
pub struct Gate(Rc<Inner>);

impl Gate {
    /// Opens the gate and wakes every waiting task.
    pub fn open(&self) {
        if self.0.open.replace(true) {
            return;
        }
        for w in self.0.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Whether it is open.
    pub fn is_open(&self) -> bool {
        self.0.open.get()
    }

    /// Resolves once the gate is open.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            gate: self,
            registered: false,
        }
    }
}

/// The future of [`Gate::wait`].
#[derive(Debug)]
pub struct Wait<'a> {
    gate: &'a Gate,
    registered: bool,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.gate.is_open() {
            return Poll::Ready(());
        }
        // A connection's task is woken by its socket too; register its waker only once so
        // the list stays one entry per waiting task.
        if !self.registered {
            self.gate.0.waiters.borrow_mut().push(cx.waker().clone());
            self.registered = true;
        }
        Poll::Pending
    }
}

//! Readiness: tasks and threads waiting for something another thread makes
//! possible (a datagram to receive, room to send), woken by that thread.
//!
//! The waker list is behind a mutex, but the side that makes things possible
//! (a poller, on its hot path) only reads an atomic flag unless someone waits:
//! one load a batch. A waiter registers, then checks again before it sleeps,
//! so a wakeup between its first check and its registration is not lost.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Wake, Waker},
    thread::Thread,
};

/// Waiters for one kind of event.
#[derive(Debug, Default)]
pub struct Readiness {
    waiting: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Readiness {
    /// Wake `waker` at the next [`Readiness::wake_all`]. The caller checks
    /// its condition again after this, before it sleeps.
    pub fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
        // SeqCst with the waker side's SeqCst load: either it sees the flag, or
        // this thread's second check sees what it did before it looked.
        self.waiting.store(true, Ordering::SeqCst);
    }

    /// Whether anyone waits (one atomic load).
    #[inline]
    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Wake everyone waiting; cheap when nobody is.
    #[inline]
    pub fn wake_all(&self) {
        if self.has_waiters() {
            self.wake_slow();
        }
    }

    #[cold]
    fn wake_slow(&self) {
        let wakers = {
            let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
            self.waiting.store(false, Ordering::SeqCst);
            std::mem::take(&mut *wakers)
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// A waker that unparks a thread: blocking calls wait on the same
/// [`Readiness`] as async tasks.
pub(crate) fn thread_waker(thread: Thread) -> Waker {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    Waker::from(Arc::new(Unpark(thread)))
}

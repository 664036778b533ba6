//! The runtime's only clock: madsim's simulated time, converted to the cores' `Instant`.

use crate::time::{Duration, Instant};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Simulated time since the run started.
pub fn now() -> Instant {
    Instant(madsim::time::TimeHandle::current().elapsed().as_nanos() as u64)
}

/// Sleeps for `duration` of simulated time (madsim rounds up to at least 1 ms).
pub async fn sleep(duration: Duration) {
    madsim::time::sleep(duration.to_std()).await;
}

/// Sleeps until `deadline`; returns at once if it has passed.
pub async fn sleep_until(deadline: Instant) {
    let now = now();
    if deadline > now {
        sleep(deadline.since(now)).await;
    }
}

/// Sleeps until `deadline`, or forever if there is none.
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => futures::future::pending::<()>().await,
    }
}

/// Lets the other tasks of the simulation run before continuing.
pub fn yield_now() -> impl Future<Output = ()> {
    YieldNow { yielded: false }
}

struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        context.waker().wake_by_ref();
        Poll::Pending
    }
}

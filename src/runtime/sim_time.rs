//! The runtime's only clock: madsim's simulated time, converted to the cores' `Instant`.

use crate::time::{Duration, Instant};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Simulated time since the run started.
pub fn now() -> Instant {
    Instant(madsim::time::TimeHandle::current().elapsed().as_nanos() as u64)
}

/// A handle on the simulated clock, taken once: reading it costs a load, where [`now`] first
/// finds the runtime's clock through a thread-local and clones its handle (a task reads the
/// clock once per record).
pub struct Clock(madsim::time::TimeHandle);

impl Clock {
    /// The clock of the runtime this runs in.
    pub fn current() -> Clock {
        Clock(madsim::time::TimeHandle::current())
    }

    /// Simulated time since the run started (what [`now`] returns).
    pub fn now(&self) -> Instant {
        Instant(self.0.elapsed().as_nanos() as u64)
    }
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

/// madsim wakes no sleeper sooner than this after it went to sleep (it clamps every sleep).
const SLEEP_MIN: Duration = Duration::from_ms(1);

/// One task's wake-up call for its next deadline. Each time a madsim `Sleep` is polled while
/// pending it files another timer, and a timer, once filed, fires even if its sleeper moved
/// on: a task that waits in a loop on "mail, or my next deadline" would file a timer on every
/// pass and be woken by each of them. An alarm files a timer only when none is pending that
/// fires no later than the deadline, so the task wakes at its deadlines and for its mail.
#[derive(Debug, Default)]
pub struct Alarm {
    // When the timer filed last fires, while it has not yet.
    pending: Option<Instant>,
}

impl Alarm {
    /// Completes once `deadline` has passed; never if there is none.
    pub fn wait_until(&mut self, deadline: Option<Instant>) -> AlarmWait<'_> {
        AlarmWait {
            alarm: self,
            deadline,
        }
    }
}

/// The future of [`Alarm::wait_until`].
#[derive(Debug)]
pub struct AlarmWait<'a> {
    alarm: &'a mut Alarm,
    deadline: Option<Instant>,
}

impl Future for AlarmWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let now = now();
        if self.alarm.pending.is_some_and(|fires| fires <= now) {
            self.alarm.pending = None;
        }
        let Some(deadline) = self.deadline else {
            return Poll::Pending;
        };
        if deadline <= now {
            return Poll::Ready(());
        }
        if self.alarm.pending.is_some_and(|fires| fires <= deadline) {
            return Poll::Pending; // That timer wakes this task in time to look again.
        }
        let fires = deadline.max(now.add(SLEEP_MIN));
        let mut sleep = madsim::time::sleep(fires.since(now).to_std());
        // Filing the timer is all the poll does: it wakes this task's waker when it fires.
        let filed = Pin::new(&mut sleep).poll(context);
        assert!(filed.is_pending(), "a sleep of at least 1 ms is pending");
        self.alarm.pending = Some(fires);
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// Waits on `alarm` for each deadline (microseconds) in turn, a letter arriving 2 ms into
    /// the first wait; returns when each wait ended.
    fn waits(deadlines: &[Option<u64>]) -> Vec<u64> {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        let deadlines = deadlines.to_vec();
        runtime.block_on(async move {
            let (mut mail, mut inbox) = futures::channel::mpsc::unbounded::<()>();
            let _mailer = madsim::task::spawn_local(async move {
                madsim::time::sleep(std::time::Duration::from_millis(2)).await;
                mail.start_send(()).expect("the reader is waiting");
                // The mailbox stays open: a closed one would end every later wait.
                madsim::time::sleep(std::time::Duration::from_secs(3600)).await;
                drop(mail);
            });
            let mut alarm = Alarm::default();
            let mut ended = Vec::new();
            for deadline in deadlines {
                futures::select_biased! {
                    _ = futures::StreamExt::next(&mut inbox).fuse() => {}
                    _ = alarm.wait_until(deadline.map(|us| Instant(us * 1_000))).fuse() => {}
                }
                // Whole microseconds: madsim's clock also moves a few nanoseconds per poll.
                ended.push(now().0 / 1_000);
            }
            ended
        })
    }

    #[test]
    fn an_alarm_wakes_its_task_at_each_deadline_whichever_way_the_deadline_moves() {
        // The letter ends the first wait; the timer filed for 20 ms serves the second.
        assert_eq!(waits(&[Some(20_000), Some(20_000)]), vec![2_000, 20_000]);
        // Moved earlier: the timer for 30 ms fires too late, so 10 ms files its own.
        assert_eq!(waits(&[Some(30_000), Some(10_000)]), vec![2_000, 10_000]);
        // Moved later: the timer for 5 ms wakes the task, which files one for 12 ms.
        assert_eq!(waits(&[Some(5_000), Some(12_000)]), vec![2_000, 12_000]);
        // A deadline passed ends the wait at once; none waits for the mail.
        assert_eq!(waits(&[Some(0), None]), vec![0, 2_000]);
        // Closer than madsim's 1 ms floor: the task wakes at the floor.
        assert_eq!(waits(&[None, Some(2_500)]), vec![2_000, 3_000]);
    }
}

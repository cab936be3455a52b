//! The runtime's wake-ups, which sluice's shards depend on and which our vendored glommio
//! changes (vendor/README.md): timers fire on an executor that has nothing else to do, and
//! a shard that sleeps is woken by what another shard sends it. A lost wake-up shows up
//! here as a hang, so each test runs its executors on threads and waits for them with a
//! deadline far above the time the work takes (about a second).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel;
use glommio::timer::sleep;
use glommio::LocalExecutorBuilder;

/// Generous: the work below takes well under a second on an idle machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `work` on an executor of its own and returns what it returns, or fails the test if
/// it has not finished by the deadline.
fn within_deadline<T: Send + 'static>(name: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = done.send(work());
        })
        .expect("spawn");
    finished
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{name}: not finished after {DEADLINE:?}: a lost wake-up"))
}

/// Many tasks sleeping to staggered 5 ms schedules, and no I/O that could wake the
/// executor by chance: every sleep must end. (A version of the vendored change that let a
/// timer due right away be consumed before sleeping slept through it, for good.)
#[test]
fn staggered_timers_fire_on_an_idle_executor() {
    const TASKS: u32 = 100;
    const ROUNDS: u32 = 40;
    let slept = within_deadline("timers", || {
        LocalExecutorBuilder::default()
            .spawn(|| async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..TASKS)
                    .map(|i| {
                        glommio::spawn_local(async move {
                            let mut next = start + Duration::from_micros(u64::from(i) * 50);
                            let mut rounds = 0;
                            for _ in 0..ROUNDS {
                                next += Duration::from_millis(5);
                                sleep(next.saturating_duration_since(Instant::now())).await;
                                assert!(Instant::now() >= next, "a sleep ended early");
                                rounds += 1;
                            }
                            rounds
                        })
                        .detach()
                    })
                    .collect();
                let mut total = 0;
                for task in tasks {
                    total += task.await.expect("task");
                }
                total
            })
            .expect("executor")
            .join()
            .expect("join")
    });
    assert_eq!(slept, TASKS * ROUNDS);
}

/// One executor sends to another, one message at a time with pauses, so that the receiver
/// goes to sleep before most messages: each must wake it.
#[test]
fn a_sleeping_executor_is_woken_by_another_executors_send() {
    const MESSAGES: u64 = 2_000;
    let (sender, receiver) = shared_channel::new_bounded::<u64>(16);
    let received = std::thread::spawn(move || {
        within_deadline("receiver", move || {
            LocalExecutorBuilder::default()
                .spawn(move || async move {
                    let receiver = receiver.connect().await;
                    let mut sum = 0;
                    let mut count = 0;
                    while let Some(n) = receiver.recv().await {
                        sum += n;
                        count += 1;
                    }
                    (count, sum)
                })
                .expect("executor")
                .join()
                .expect("join")
        })
    });
    within_deadline("sender", move || {
        LocalExecutorBuilder::default()
            .spawn(move || async move {
                let sender = sender.connect().await;
                for n in 1..=MESSAGES {
                    sender.send(n).await.expect("send");
                    if n % 4 == 0 {
                        sleep(Duration::from_micros(200)).await;
                    }
                }
            })
            .expect("executor")
            .join()
            .expect("join")
    });
    let (count, sum) = received.join().expect("receiver thread");
    assert_eq!(count, MESSAGES);
    assert_eq!(sum, MESSAGES * (MESSAGES + 1) / 2);
}

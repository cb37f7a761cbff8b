use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

type Log = Rc<RefCell<Vec<u32>>>;

/// A job that records `tag` each time it is polled and finishes after `polls` polls, waking
/// itself in between (a cooperative yield).
fn job(log: &Log, tag: u32, polls: u32) -> impl Future<Output = ()> + 'static {
    let log = Rc::clone(log);
    let mut left = polls;
    std::future::poll_fn(move |cx| {
        log.borrow_mut().push(tag);
        left -= 1;
        if left == 0 {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

#[test]
fn lanes_owner_pops_newest_and_thief_steals_oldest() {
    let mut lanes: Lanes<u32> = Lanes::new(&[2]);
    for v in 1..=3 {
        lanes.push_back(0, v);
    }
    assert_eq!(
        lanes.take(0),
        Some((3, Steal::Own)),
        "the owner runs the newest (warm) first"
    );
    assert_eq!(
        lanes.take(1),
        Some((1, Steal::Stolen)),
        "a thief takes the oldest"
    );
    assert_eq!(lanes.total(), 1);
}

#[test]
fn steal_takes_from_the_fullest_deque_of_the_same_lane_only() {
    let mut lanes: Lanes<u32> = Lanes::new(&[3, 1]);
    lanes.push_back(0, 10);
    lanes.push_back(1, 20);
    lanes.push_back(1, 21);
    lanes.push_back(3, 99); // the other lane
    assert_eq!(
        lanes.take(2),
        Some((20, Steal::Stolen)),
        "slot 1 is the fullest"
    );
    assert_eq!(
        lanes.take(2),
        Some((10, Steal::Stolen)),
        "ties go to the lower slot"
    );
    assert_eq!(lanes.take(2), Some((21, Steal::Stolen)));
    assert_eq!(lanes.take(2), None, "never from another lane");
    assert_eq!(lanes.lane_len(1), 1);
}

#[test]
fn every_job_runs_to_completion_within_its_lane() {
    let l = log();
    let mut ex = Executor::new([("worker", 3), ("planner", 1)]);
    for tag in 0..10 {
        ex.spawn("worker", job(&l, tag, 3)).unwrap();
    }
    let planner = ex.spawn("planner", job(&l, 100, 2)).unwrap();
    let report = ex.run_until_stalled(usize::MAX);
    assert_eq!(report.finished, 11);
    assert_eq!(report.polled, 32);
    assert!(!report.more);
    assert!(ex.is_empty());
    assert!(!ex.contains(planner));
    assert_eq!(
        ex.stats().idle_turns_with_work,
        0,
        "no slot idled while its lane had work"
    );
}

#[test]
fn run_until_stalled_respects_its_budget() {
    let l = log();
    let mut ex = Executor::new([("worker", 2)]);
    for tag in 0..4 {
        ex.spawn("worker", job(&l, tag, 5)).unwrap();
    }
    let report = ex.run_until_stalled(7);
    assert_eq!(report.polled, 7);
    assert!(report.more, "ready work remains");
    assert_eq!(l.borrow().len(), 7);
    let rest = ex.run_until_stalled(usize::MAX);
    assert_eq!(rest.polled, 13);
    assert!(!ex.try_run_one(), "nothing left to run");
}

#[test]
fn a_woken_job_returns_to_the_slot_that_ran_it() {
    let mut ex = Executor::new([("worker", 4)]);
    let (tx, rx) = oneshot::channel::<()>();
    let done = Rc::new(RefCell::new(false));
    let flag = Rc::clone(&done);
    let waiting = ex
        .spawn("worker", async move {
            let _ = rx.await;
            *flag.borrow_mut() = true;
        })
        .unwrap();
    ex.run_until_stalled(usize::MAX);
    let home = ex.home_of(waiting).unwrap();
    // Fill the other slots' deques, then wake the job: it goes back to its home slot.
    let l = log();
    for tag in 0..6 {
        ex.spawn("worker", job(&l, tag, 1)).unwrap();
    }
    let before = ex.lanes.len(home);
    tx.send(()).unwrap();
    ex.collect_woken();
    assert_eq!(
        ex.lanes.len(home),
        before + 1,
        "the woken job is queued in its home slot"
    );
    assert_eq!(
        ex.lanes.take(home),
        Some((waiting, Steal::Own)),
        "at the back: it runs next there"
    );
    ex.lanes.push_back(home, waiting);
    ex.run_until_stalled(usize::MAX);
    assert!(*done.borrow());
}

#[test]
fn a_follow_up_runs_next_in_the_same_slot() {
    let l = log();
    let mut ex = Executor::new([("worker", 2)]);
    let first = ex.spawn("worker", job(&l, 1, 2)).unwrap();
    ex.run_until_stalled(1);
    let home = ex.home_of(first).unwrap();
    let follow = ex.spawn_after(first, job(&l, 2, 1)).unwrap();
    assert_eq!(ex.home_of(follow), Some(home));
    ex.run_until_stalled(usize::MAX);
    assert_eq!(
        *l.borrow(),
        [1, 1, 2],
        "the follow-up ran in the warm slot after its parent"
    );
}

#[test]
fn a_stale_waker_wakes_nothing() {
    let mut ex = Executor::new([("worker", 1)]);
    let stash: Rc<RefCell<Option<std::task::Waker>>> = Rc::new(RefCell::new(None));
    let keep = Rc::clone(&stash);
    let old = ex
        .spawn(
            "worker",
            std::future::poll_fn(move |cx| {
                *keep.borrow_mut() = Some(cx.waker().clone());
                Poll::Ready(())
            }),
        )
        .unwrap();
    ex.run_until_stalled(usize::MAX);
    assert!(!ex.contains(old));
    // A new job reuses the slab slot; the old waker must not queue it.
    let (tx, rx) = oneshot::channel::<()>();
    let new = ex
        .spawn("worker", async move {
            let _ = rx.await;
        })
        .unwrap();
    ex.run_until_stalled(usize::MAX);
    stash.borrow_mut().take().unwrap().wake();
    let report = ex.run_until_stalled(usize::MAX);
    assert_eq!(report.polled, 0, "the stale wake queued nothing");
    assert!(ex.contains(new));
    drop(tx);
    assert_eq!(ex.run_until_stalled(usize::MAX).finished, 1);
}

#[test]
fn a_job_woken_many_times_is_queued_once() {
    let mut ex = Executor::new([("worker", 1)]);
    let stash: Rc<RefCell<Option<std::task::Waker>>> = Rc::new(RefCell::new(None));
    let keep = Rc::clone(&stash);
    let polls = Rc::new(RefCell::new(0));
    let count = Rc::clone(&polls);
    ex.spawn(
        "worker",
        std::future::poll_fn(move |cx| {
            *count.borrow_mut() += 1;
            *keep.borrow_mut() = Some(cx.waker().clone());
            if *count.borrow() == 2 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }),
    )
    .unwrap();
    ex.run_until_stalled(usize::MAX);
    let w = stash.borrow().clone().unwrap();
    for _ in 0..5 {
        w.wake_by_ref();
    }
    assert_eq!(ex.run_until_stalled(usize::MAX).polled, 1);
    assert_eq!(*polls.borrow(), 2);
}

#[test]
fn unknown_lanes_are_refused() {
    let mut ex = Executor::new([("worker", 1)]);
    assert_eq!(
        ex.spawn("nope", async {}).unwrap_err().code(),
        "INVALID_INPUT"
    );
}

#[test]
fn no_slot_idles_while_compatible_work_waits_under_random_load() {
    for seed in 0..20u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let l = log();
        let mut ex = Executor::new([("worker", 8), ("planner", 2), ("reviewer", 4)]);
        let lanes = ["worker", "planner", "reviewer"];
        let mut spawned = 0;
        for _ in 0..50 {
            for _ in 0..rng.usize(0..20) {
                ex.spawn(lanes[rng.usize(0..3)], job(&l, spawned, rng.u32(1..6)))
                    .unwrap();
                spawned += 1;
            }
            ex.run_until_stalled(rng.usize(1..40));
        }
        ex.run_until_stalled(usize::MAX);
        assert!(ex.is_empty(), "seed {seed}");
        let stats = ex.stats();
        assert_eq!(stats.idle_turns_with_work, 0, "seed {seed}: {stats:?}");
        assert!(
            stats.busy_turns > 0 && stats.steals > 0,
            "seed {seed}: {stats:?}"
        );
    }
}

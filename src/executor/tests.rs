use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

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

/// An executor with one lane of `n` slots.
fn lane(n: usize) -> Executor<u32> {
    Executor::new(&[n])
}

#[test]
fn admitted_work_goes_to_an_idle_slot_with_the_shortest_deque() {
    let mut ex = Executor::new(&[3, 1]);
    ex.push_child(0, 90); // slot 0 has queued work
    assert_eq!(
        ex.place(0, 1),
        Some(1),
        "the idle slot with the shortest deque"
    );
    assert_eq!(ex.place(0, 2), Some(2));
    assert_eq!(ex.place(0, 3), Some(0));
    assert_eq!(ex.place(0, 4), None, "every slot of the lane is in use");
    assert_eq!(ex.place(1, 5), Some(3), "the other lane has its own slot");
    assert!(!ex.is_idle(3));
}

#[test]
fn a_waiting_parent_lends_its_slot_to_its_newest_child_first() {
    let mut ex = lane(2);
    let slot = ex.place(0, 1).unwrap();
    for child in [10, 11, 12] {
        ex.push_child(slot, child);
    }
    assert!(ex.lend(slot, 1));
    assert!(ex.is_lent_free(slot));
    let (child, deque, how) = ex.next_for(slot).unwrap();
    assert_eq!(
        (child, deque, how),
        (12, slot, Steal::Own),
        "owner end: LIFO"
    );
    assert_eq!(ex.take(slot, deque, how), Some(12));
    assert_eq!(ex.take(slot, deque, how), None, "one occupant at a time");
    assert_eq!(ex.lenders(slot).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn a_free_slot_steals_the_oldest_child_of_the_fullest_deque() {
    let mut ex = lane(3);
    let a = ex.place(0, 1).unwrap();
    let b = ex.place(0, 2).unwrap();
    ex.push_child(a, 10);
    ex.push_child(b, 20);
    ex.push_child(b, 21);
    let idle = 2;
    assert!(ex.is_idle(idle));
    let (child, deque, how) = ex.next_for(idle).unwrap();
    assert_eq!((child, deque, how), (20, b, Steal::Stolen));
    assert_eq!(ex.take(idle, deque, how), Some(20));
    assert_eq!(ex.queued_in(0), 2);
}

#[test]
fn a_parent_is_first_in_line_for_its_slot_when_its_children_settle() {
    let mut ex = lane(1);
    let slot = ex.place(0, 1).unwrap();
    ex.push_child(slot, 10);
    ex.push_child(slot, 11);
    assert!(ex.lend(slot, 1));
    let (c, d, h) = ex.next_for(slot).unwrap();
    assert_eq!(ex.take(slot, d, h), Some(c));
    ex.set_ready(slot, 1, true);
    assert_eq!(
        ex.resume(slot),
        None,
        "the slot is busy: the parent waits for it"
    );
    assert!(ex.leave(slot, c));
    assert_eq!(ex.resume(slot), Some(1), "before the queued child");
    assert_eq!(ex.occupant(slot), Some(1));
    assert_eq!(ex.queued(), 1);
}

#[test]
fn nested_lenders_resume_top_first() {
    let mut ex = lane(1);
    let slot = ex.place(0, 1).unwrap();
    ex.push_child(slot, 10);
    ex.lend(slot, 1);
    let (c, d, h) = ex.next_for(slot).unwrap();
    ex.take(slot, d, h);
    ex.push_child(slot, 100); // the child's own child
    assert!(ex.lend(slot, c));
    ex.set_ready(slot, 1, true);
    assert_eq!(
        ex.resume(slot),
        None,
        "the bottom lender waits for the one above"
    );
    let (g, d, h) = ex.next_for(slot).unwrap();
    assert_eq!(g, 100);
    ex.take(slot, d, h);
    ex.leave(slot, g);
    ex.set_ready(slot, c, true);
    assert_eq!(ex.resume(slot), Some(c));
    ex.leave(slot, c);
    assert_eq!(ex.resume(slot), Some(1));
    ex.leave(slot, 1);
    assert!(ex.is_idle(slot));
}

#[test]
fn a_lender_that_settles_leaves_the_stack() {
    let mut ex = lane(1);
    let slot = ex.place(0, 1).unwrap();
    ex.push_child(slot, 10);
    ex.lend(slot, 1);
    assert!(ex.leave(slot, 1));
    assert!(
        ex.is_idle(slot),
        "its queued child stays, for any slot with a permit"
    );
    assert!(ex.unqueue(slot, 10));
    assert!(!ex.unqueue(slot, 10));
    assert_eq!(ex.queued(), 0);
}

#[test]
fn no_task_is_ever_in_two_places_under_random_operations() {
    for seed in 0..200u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut ex = Executor::new(&[3, 2]);
        let mut next = 0u32;
        for _ in 0..300 {
            let slot = rng.usize(0..ex.slot_count());
            match rng.u8(0..6) {
                0 => {
                    next += 1;
                    ex.place(rng.usize(0..2), next);
                }
                1 => {
                    next += 1;
                    ex.push_child(slot, next);
                }
                2 => {
                    if let Some(t) = ex.occupant(slot) {
                        ex.lend(slot, t);
                    }
                }
                3 => {
                    if let Some((_, d, h)) = ex.next_for(slot) {
                        ex.take(slot, d, h);
                    }
                }
                4 => {
                    if let Some(t) = ex.occupant(slot) {
                        ex.leave(slot, t);
                    }
                    let top = ex.lenders(slot).last();
                    if let Some(t) = top {
                        ex.set_ready(slot, t, true);
                        ex.resume(slot);
                    }
                }
                _ => {
                    let bottom = ex.lenders(slot).next();
                    if let Some(t) = bottom {
                        ex.leave(slot, t);
                    }
                }
            }
            let mut seen = std::collections::HashSet::new();
            for s in 0..ex.slot_count() {
                for t in ex.occupant(s).into_iter().chain(ex.lenders(s)) {
                    assert!(seen.insert(t), "seed {seed}: task {t} twice");
                }
                for t in ex.lanes.deques_of(s) {
                    assert!(seen.insert(t), "seed {seed}: task {t} twice");
                }
                let lane = ex.lane_of(s);
                assert!(ex.slots_of(lane).contains(&s));
            }
        }
    }
}

#[test]
fn a_parent_that_joins_more_children_waits_again() {
    let mut ex = lane(1);
    let slot = ex.place(0, 1).unwrap();
    ex.lend(slot, 1);
    ex.set_ready(slot, 1, true);
    ex.push_child(slot, 10);
    ex.set_ready(slot, 1, false); // a second join
    assert_eq!(ex.resume(slot), None);
    let (c, d, h) = ex.next_for(slot).unwrap();
    assert_eq!(ex.take(slot, d, h), Some(10));
    ex.leave(slot, c);
    ex.set_ready(slot, 1, true);
    assert_eq!(ex.resume(slot), Some(1));
}

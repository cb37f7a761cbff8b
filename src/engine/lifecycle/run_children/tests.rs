//! Run children on the core, driven as run.js drives it: a tree of runs in which every parent
//! starts its children and waits on them, with and without joining.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use rustc_hash::FxHashMap;

use crate::config::{Config, ConfigInput};
use crate::control::Outcome;
use crate::engine::lifecycle::{Engine, RunRequest};
use crate::ids::{Priority, RunId};

fn engine(lane: f64) -> Engine {
    let config = Config::from_input(ConfigInput {
        lanes: Some([("w".to_owned(), lane)].into_iter().collect()),
        ..ConfigInput::default()
    })
    .unwrap();
    Engine::new(&config, 7)
}

fn request(o: &Engine, lane: &str) -> RunRequest {
    RunRequest {
        lane: o.run_lane(lane),
        key: None,
        priority: Priority::Normal,
        fail_fast: false,
        deadline_ms: None,
    }
}

/// Permits held in lane `w` (a lent slot's child holds one that does not count it).
fn in_use(o: &Engine) -> u32 {
    let stats = o.stats(0);
    stats
        .control
        .lanes
        .iter()
        .find(|l| l.name == "w")
        .unwrap()
        .in_use
}

fn ready(o: &mut Engine) -> Vec<RunId> {
    let mut out = [0u32; 256];
    let n = o.drain_run_ready(&mut out);
    out[..n].iter().map(|&r| RunId::from_raw(r)).collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Admitted, its function at work.
    Working,
    /// Waiting on this many children.
    Waiting(usize),
    /// Its children ended; (joining) it waits for its slot back.
    Resuming,
}

struct Node {
    level: u32,
    parent: Option<RunId>,
    phase: Phase,
    spawned: bool,
}

/// Outcome of a tree run: whether the root ended, the start order (as (level, path) names)
/// and the most functions at work at once.
struct Tree {
    done: bool,
    started: Vec<String>,
    most: usize,
}

/// A tree of `depth` levels, `fan` children per parent, in a lane of `lane`; each parent
/// starts its children as children (`lend`: then joins them) or as plain runs it awaits.
/// One step ends or advances the oldest working function; the executor's invariants are
/// checked after every step.
fn tree(lane: usize, depth: u32, fan: usize, lend: bool) -> Tree {
    let mut o = engine(lane as f64);
    let mut nodes: FxHashMap<RunId, Node> = FxHashMap::default();
    let mut names: FxHashMap<RunId, String> = FxHashMap::default();
    let mut working: Vec<RunId> = Vec::new();
    let mut started = Vec::new();
    let mut most = 0;
    let root = o.run_submit(0, request(&o, "w")).unwrap();
    nodes.insert(
        root,
        Node {
            level: 0,
            parent: None,
            phase: Phase::Working,
            spawned: false,
        },
    );
    names.insert(root, "r".into());
    let mut done = false;
    for step in 0..10_000u64 {
        for id in ready(&mut o) {
            started.push(names[&id].clone());
            working.push(id);
        }
        for id in o.take_runs_resumed() {
            if nodes.get(&id).is_some_and(|n| n.phase == Phase::Resuming) {
                nodes.get_mut(&id).unwrap().phase = Phase::Working;
                working.push(id);
            }
        }
        most = most.max(working.len());
        assert!(
            in_use(&o) as usize <= lane,
            "step {step}: the lane over its limit"
        );
        o.check_slots(step)
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
        let Some(id) = (!working.is_empty()).then(|| working.remove(0)) else {
            break;
        };
        let (level, spawned) = (nodes[&id].level, nodes[&id].spawned);
        if level < depth && !spawned {
            nodes.get_mut(&id).unwrap().spawned = true;
            let mut kids = Vec::new();
            for k in 0..fan {
                let r = request(&o, "w");
                let kid = if lend {
                    o.run_submit_child(step, r, id).unwrap()
                } else {
                    o.run_submit(step, r).unwrap()
                };
                names.insert(kid, format!("{}.{k}", names[&id]));
                nodes.insert(
                    kid,
                    Node {
                        level: level + 1,
                        parent: Some(id),
                        phase: Phase::Working,
                        spawned: false,
                    },
                );
                kids.push(kid);
            }
            if lend {
                assert!(o.run_join(step, id, &kids), "step {step}: the parent waits");
            }
            nodes.get_mut(&id).unwrap().phase = Phase::Waiting(fan);
            continue;
        }
        o.run_end(step, id, Outcome::Success).unwrap();
        let parent = nodes.remove(&id).and_then(|n| n.parent);
        if id == root {
            done = true;
            break;
        }
        if let Some(p) = parent.and_then(|p| nodes.get_mut(&p).map(|n| (p, n))) {
            let (pid, n) = p;
            if let Phase::Waiting(left) = n.phase {
                n.phase = if left > 1 {
                    Phase::Waiting(left - 1)
                } else if lend {
                    Phase::Resuming
                } else {
                    working.push(pid);
                    Phase::Working
                };
            }
        }
        // A parent resumed by this end is reported at the top of the next step.
    }
    Tree {
        done,
        started,
        most,
    }
}

#[test]
fn a_joined_run_tree_of_depth_3_fan_out_4_completes_in_a_lane_of_4() {
    let t = tree(4, 3, 4, true);
    assert!(t.done, "the root ended");
    assert_eq!(t.started.len(), 1 + 4 + 16 + 64);
    assert!(t.most <= 4, "{} at work at once", t.most);
    assert_eq!(t.most, 4);
}

#[test]
fn the_same_tree_of_plain_runs_deadlocks() {
    let t = tree(4, 3, 4, false);
    assert!(!t.done);
    assert!(t.started.len() < 85);
}

#[test]
fn a_lane_of_one_runs_the_tree_depth_first_newest_child_first() {
    let t = tree(1, 2, 3, true);
    assert!(t.done);
    let mut expected = Vec::new();
    fn visit(name: String, level: u32, out: &mut Vec<String>) {
        out.push(name.clone());
        if level < 2 {
            for k in (0..3).rev() {
                visit(format!("{name}.{k}"), level + 1, out);
            }
        }
    }
    visit("r".into(), 0, &mut expected);
    assert_eq!(t.started, expected);
}

#[test]
fn a_child_without_a_running_parent_is_a_plain_run_and_a_join_of_none_waits_for_nothing() {
    let mut o = engine(2.0);
    let parent = o.run_submit(0, request(&o, "w")).unwrap();
    assert_eq!(ready(&mut o), vec![parent]);
    o.run_end(1, parent, Outcome::Success).unwrap();
    let late = o.run_submit_child(2, request(&o, "w"), parent).unwrap();
    assert_eq!(ready(&mut o), vec![late], "admitted as a plain run");
    assert!(
        !o.run_join(2, parent, &[late]),
        "an ended parent waits for nothing"
    );
    assert!(!o.run_join(2, late, &[]));
    o.run_end(3, late, Outcome::Success).unwrap();
    o.check_slots(3).unwrap();
}

#[test]
fn a_queued_child_that_expires_ends_its_parents_wait() {
    let mut o = engine(1.0);
    let parent = o.run_submit(0, request(&o, "w")).unwrap();
    assert_eq!(ready(&mut o), vec![parent]);
    let mut r = request(&o, "w");
    r.deadline_ms = Some(10);
    let kid = o.run_submit_child(0, r, parent).unwrap();
    assert!(
        ready(&mut o).is_empty(),
        "the lane is full: it waits in the parent's deque"
    );
    // The parent does not join: its slot is not lent, the child waits past its deadline.
    o.tick(20).unwrap();
    assert_eq!(o.take_run_expired().len(), 1);
    o.check_slots(20).unwrap();
    assert!(
        !o.run_join(21, parent, &[kid]),
        "the expired child is no longer open"
    );
    o.run_end(22, parent, Outcome::Success).unwrap();
    o.check_slots(22).unwrap();
    assert_eq!(in_use(&o), 0);
}

#[test]
fn a_parent_that_ends_while_lending_keeps_the_lane_counted_until_its_slot_is_idle() {
    let mut o = engine(1.0);
    let parent = o.run_submit(0, request(&o, "w")).unwrap();
    assert_eq!(ready(&mut o), vec![parent]);
    let kid = o.run_submit_child(0, request(&o, "w"), parent).unwrap();
    assert!(o.run_join(0, parent, &[kid]));
    assert_eq!(ready(&mut o), vec![kid], "the lent slot runs the child");
    o.run_end(1, parent, Outcome::Success).unwrap();
    assert_eq!(
        o.take_runs_resumed(),
        vec![parent],
        "its join ended: it ended"
    );
    assert_eq!(o.kept_permits(), 1);
    let other = o.run_submit(2, request(&o, "w")).unwrap();
    assert!(
        ready(&mut o).is_empty(),
        "the lane is still counted: {other:?} waits"
    );
    o.run_end(3, kid, Outcome::Success).unwrap();
    assert_eq!(o.kept_permits(), 0);
    assert_eq!(ready(&mut o), vec![other]);
    o.check_slots(3).unwrap();
}

//! Races: many commands at once must end consistent, with nothing left behind.

use std::thread;

use runvm_tests::*;

#[test]
fn parallel_creates_of_one_id_let_exactly_one_win() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new();
    let mut bundles: Vec<BusyboxBundle> = (0..20).map(|_| BusyboxBundle::new()).collect();
    for b in bundles.iter_mut() {
        b.set_args(&["sleep", "1000"]);
    }
    let id = bundles[0].id().to_string();
    rt.track(&id);
    let wins = thread::scope(|s| {
        let handles: Vec<_> = bundles
            .iter()
            .map(|b| {
                let (rt, id) = (&rt, id.as_str());
                s.spawn(move || {
                    rt.run(&["create", "--bundle", b.path_str(), id])
                        .status
                        .success()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("create thread"))
            .filter(|won| *won)
            .count()
    });
    assert_eq!(wins, 1, "exactly one create of {id} must succeed");
    assert_eq!(rt.state(&id)["status"], "created");
    assert_success(&rt.delete_force(&id), "delete --force");
    for b in &bundles {
        rt.assert_no_leftovers(b);
    }
}

#[test]
fn parallel_lifecycles_all_succeed_and_leave_nothing() {
    if !require_root() {
        return;
    }
    const N: usize = 50;
    let rt = Runtime::new();
    let mut bundles: Vec<BusyboxBundle> = (0..N).map(|_| BusyboxBundle::new()).collect();
    for b in bundles.iter_mut() {
        b.set_args(&["sh", "-c", "exit 7"]);
    }
    thread::scope(|s| {
        for b in &bundles {
            let rt = &rt;
            s.spawn(move || {
                let out = rt.run_bundle(b);
                assert_eq!(
                    out.status.code(),
                    Some(7),
                    "{}: {}",
                    b.id(),
                    stderr_of(&out)
                );
            });
        }
    });
    for b in &bundles {
        rt.assert_no_leftovers(b);
    }
    rt.assert_root_empty();
}

#[test]
fn kill_and_delete_racing_end_with_the_container_gone() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new();
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    rt.create_ok(&bundle);
    assert_success(&rt.start(bundle.id()), "start");
    thread::scope(|s| {
        s.spawn(|| rt.kill(bundle.id(), "KILL"));
        s.spawn(|| rt.delete_force(bundle.id()));
        s.spawn(|| rt.kill(bundle.id(), "TERM"));
    });
    // Whatever order they ran in, a final forced delete leaves nothing.
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn concurrent_creates_under_a_new_shared_parent_cgroup_both_succeed() {
    // Each create makes the missing parent or finds it being made by the other; with cgroup v1
    // cpuset, a parent found before its maker filled cpuset.cpus used to leave the leaf empty
    // and adding the container's process then failed with ENOSPC.
    if !require_root() {
        return;
    }
    const ROUNDS: usize = 25;
    const PER_ROUND: usize = 4;
    // Declared before the runtime so it drops after it: when a round fails, the runtime's drop
    // deletes the containers first, then the shared parents can go.
    let mut parents = SharedParents::default();
    let rt = Runtime::new();
    for round in 0..ROUNDS {
        let parent = format!("/{}", unique_id("runvm-race-parent"));
        parents.0.push(parent.clone());
        let mut bundles: Vec<BusyboxBundle> =
            (0..PER_ROUND).map(|_| BusyboxBundle::new()).collect();
        for b in bundles.iter_mut() {
            let leaf = format!("{parent}/{}", b.id());
            b.config_mut()["linux"]["cgroupsPath"] = leaf.into();
            b.set_args(&["true"]);
        }
        thread::scope(|s| {
            for b in &bundles {
                let rt = &rt;
                s.spawn(move || {
                    let out = rt.create(b, &[]);
                    assert_success(&out, &format!("round {round}: create {}", b.id()));
                });
            }
        });
        for b in &bundles {
            assert_success(&rt.delete_force(b.id()), "delete --force");
            let leaf = format!("{parent}/{}", b.id());
            for dir in cgroup_dirs(&leaf) {
                assert!(!dir.exists(), "{} left behind", dir.display());
            }
        }
        // Whichever create made the shared parent may have found another's leaf still in it
        // at delete time; the parent is then left, as runc leaves it: `parents` removes it.
    }
}

/// Parent cgroups the test made up; removed in every hierarchy when dropped.
#[derive(Default)]
struct SharedParents(Vec<String>);

impl Drop for SharedParents {
    fn drop(&mut self) {
        for parent in &self.0 {
            for dir in cgroup_dirs(parent) {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

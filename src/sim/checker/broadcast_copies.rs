//! Exactly-once for broadcast state: at a consistent cut (and at the end) every subtask's
//! copy applied each broadcast element before the cut exactly once, and — the copies having
//! applied the same elements, in whatever order their channels delivered them — holds the
//! same state as the reference, which applied them in input order (Flink requires a
//! broadcast function to reach the same state whatever the order).

use crate::state::broadcast_state::BroadcastStateSnapshot;
use std::collections::BTreeMap;

/// Compares each copy of `copies` (per keyed broadcast operator uid) with the reference's
/// state of that uid; says how many copies agreed.
pub(super) fn compare_copies(
    name: &str,
    copies: &BTreeMap<&str, Vec<&BroadcastStateSnapshot>>,
    reference: &BTreeMap<String, BroadcastStateSnapshot>,
) -> Result<usize, String> {
    let mut compared = 0;
    for (uid, expected) in reference {
        let mut wanted = encoded(&expected.log);
        wanted.sort();
        let mut found: Vec<&&BroadcastStateSnapshot> =
            copies.get(uid.as_str()).into_iter().flatten().collect();
        found.sort_by_key(|copy| copy.subtask_index);
        if found.is_empty() && !expected.log.is_empty() {
            return Err(format!(
                "{name}: no subtask of operator `{uid}` holds broadcast state, the reference applied {} broadcast element(s)",
                expected.log.len()
            ));
        }
        for copy in found {
            let subtask = copy.subtask_index;
            let mut applied = encoded(&copy.log);
            applied.sort();
            if applied != wanted {
                return Err(format!(
                    "{name}: operator `{uid}` subtask {subtask}'s broadcast state applied {} broadcast element(s), the input before the cut holds {}; {}",
                    applied.len(),
                    wanted.len(),
                    first_difference(&applied, &wanted)
                ));
            }
            if copy.states != expected.states {
                return Err(format!(
                    "{name}: operator `{uid}` subtask {subtask}'s broadcast state differs from the reference's, though both applied the same {} element(s) (the reference in input order): the function's broadcast state depends on the order broadcast elements arrive in, which differs between subtasks",
                    wanted.len()
                ));
            }
            compared += 1;
        }
    }
    Ok(compared)
}

fn encoded(log: &[crate::api::value::Value]) -> Vec<Vec<u8>> {
    log.iter()
        .map(|value| postcard::to_allocvec(value).expect("values always encode"))
        .collect()
}

/// The first element (in sorted order) one side has more of than the other.
fn first_difference(applied: &[Vec<u8>], wanted: &[Vec<u8>]) -> String {
    fn count(side: &[Vec<u8>]) -> BTreeMap<&Vec<u8>, i64> {
        let mut counts: BTreeMap<&Vec<u8>, i64> = BTreeMap::new();
        for element in side {
            *counts.entry(element).or_default() += 1;
        }
        counts
    }
    let (ours, theirs) = (count(applied), count(wanted));
    let keys = ours.keys().chain(theirs.keys());
    for element in keys {
        let (a, w) = (
            ours.get(element).copied().unwrap_or(0),
            theirs.get(element).copied().unwrap_or(0),
        );
        if a != w {
            let value: crate::api::value::Value =
                postcard::from_bytes(element).expect("encoded above");
            return format!("element {value} applied {a} time(s), expected {w}");
        }
    }
    "the same elements".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::value::Value;

    fn copy(subtask_index: u32, log: &[&str], state: &[(u8, u8)]) -> BroadcastStateSnapshot {
        BroadcastStateSnapshot {
            subtask_index,
            parallelism: 2,
            states: BTreeMap::from([(
                "rules".to_string(),
                state.iter().map(|(k, v)| (vec![*k], vec![*v])).collect(),
            )]),
            log: log.iter().map(|s| Value::Str((*s).into())).collect(),
        }
    }

    #[test]
    fn copies_must_apply_the_cut_once_and_agree_with_the_reference() {
        let reference = BTreeMap::from([("op".to_string(), copy(0, &["a", "b"], &[(1, 2)]))]);
        let (reordered, other) = (
            copy(0, &["b", "a"], &[(1, 2)]),
            copy(1, &["a", "b"], &[(1, 2)]),
        );
        let good = BTreeMap::from([("op", vec![&reordered, &other])]);
        assert_eq!(compare_copies("cut", &good, &reference), Ok(2));
        let lost = copy(1, &["a"], &[(1, 2)]);
        let error =
            compare_copies("cut", &BTreeMap::from([("op", vec![&lost])]), &reference).unwrap_err();
        assert!(error.contains("applied 1 broadcast element(s), the input before the cut holds 2; element b applied 0 time(s), expected 1"), "{error}");
        let twice = copy(1, &["a", "b", "b"], &[(1, 2)]);
        assert!(
            compare_copies("cut", &BTreeMap::from([("op", vec![&twice])]), &reference).is_err()
        );
        let diverged = copy(1, &["b", "a"], &[(1, 3)]);
        let error = compare_copies(
            "cut",
            &BTreeMap::from([("op", vec![&diverged])]),
            &reference,
        )
        .unwrap_err();
        assert!(error.contains("depends on the order"), "{error}");
        let error = compare_copies("cut", &BTreeMap::new(), &reference).unwrap_err();
        assert!(error.contains("no subtask of operator `op`"), "{error}");
    }
}

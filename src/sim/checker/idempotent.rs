//! The idempotent sink's row: the final key-value contents equal the oracle's upserts.

use super::*;

/// What upserting the oracle's output leaves in the store.
pub(super) fn upserted(expected: &RecordBatch) -> BTreeMap<String, Value> {
    expected
        .iter()
        .map(|bytes| {
            let value: Value = crate::codec::decode_message(bytes).expect("the sink encoded it");
            (upsert_key(&value), value)
        })
        .collect()
}

pub(super) fn compare_kv(
    expected: &BTreeMap<String, Value>,
    actual: &BTreeMap<String, Value>,
) -> Result<(), String> {
    let keys: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for key in keys {
        let (want, got) = (expected.get(key), actual.get(key));
        if want != got {
            let show = |v: Option<&Value>| v.map_or("nothing".to_string(), Value::to_string);
            return Err(format!(
                "kv key `{key}`: expected {}, the store holds {}",
                show(want),
                show(got)
            ));
        }
    }
    Ok(())
}

/// Idempotent: the store ends equal to upserting the oracle's output; values that jumped
/// back after a recovery are noted.
pub(super) fn idempotent_output(
    expected: &RecordBatch,
    output: &SinkOutput,
    notes: &mut Vec<String>,
) -> Result<String, String> {
    let jumps = jump_backs(&output.kv_history);
    if !jumps.is_empty() {
        let examples: Vec<String> = jumps
            .iter()
            .take(3)
            .map(|j| {
                format!(
                    "`{}` went back from {} to {} at {}, then forward to {}",
                    j.key, j.from, j.to, j.at, j.last
                )
            })
            .collect();
        notes.push(format!(
            "{} key(s) jumped back to an earlier value after a recovery and replayed forward, e.g. {}",
            jumps.len(),
            examples.join("; ")
        ));
    }
    compare_kv(&upserted(expected), &output.kv)?;
    Ok(format!(
        "{} keys equal after {} upserts; {} key(s) jumped back on the way",
        output.kv.len(),
        output.kv_history.len(),
        jumps.len()
    ))
}

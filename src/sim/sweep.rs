//! The seeds of `snapflow sweep` and how a seed is written on the command line.

use std::ops::RangeInclusive;

/// Parses a seed: an unsigned 64-bit integer, said plainly when it is not (`-5` would
/// otherwise read as a flag).
pub fn parse_seed(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        format!(
            "`{text}` is not a seed: a seed is an unsigned integer, 0 to {}",
            u64::MAX
        )
    })
}

/// The seeds `from .. from + count`: at least one, and none past `u64::MAX`.
pub fn seed_range(from: u64, count: u64) -> Result<RangeInclusive<u64>, String> {
    if count == 0 {
        return Err("--seeds 0: a sweep runs at least one seed".to_string());
    }
    let last = from.checked_add(count - 1).ok_or_else(|| {
        format!(
            "--from {from} --seeds {count}: the last seed would pass {}; at most {} seeds start at {from}",
            u64::MAX,
            u64::MAX - from + 1
        )
    })?;
    Ok(from..=last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_an_unsigned_integer() {
        assert_eq!(parse_seed("18446744073709551615"), Ok(u64::MAX));
        let negative = parse_seed("-5").unwrap_err();
        assert!(negative.contains("`-5` is not a seed: a seed is an unsigned integer"));
        assert!(parse_seed("18446744073709551616").is_err());
    }

    #[test]
    fn a_sweep_runs_at_least_one_seed_and_never_wraps() {
        assert!(seed_range(7, 0).unwrap_err().contains("at least one seed"));
        assert_eq!(seed_range(7, 3), Ok(7..=9));
        assert_eq!(seed_range(u64::MAX, 1), Ok(u64::MAX..=u64::MAX));
        assert_eq!(seed_range(u64::MAX - 1, 2).map(|r| r.count()), Ok(2));
        let wraps = seed_range(u64::MAX, 2).unwrap_err();
        assert!(wraps.contains("at most 1 seeds start at"), "{wraps}");
        assert!(seed_range(0, u64::MAX).is_ok());
    }
}

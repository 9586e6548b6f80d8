//! Helpers shared by generators. All integer or exact-float arithmetic (no
//! `sin`, no platform maths library), so native and wasm output agree byte
//! for byte.

/// The most records a generator produces for one tick; a larger
/// `tick.count` is refused by [`check_count`].
pub const MAX_RECORDS_PER_TICK: u32 = 100_000;

/// Refuses a tick asking for more than [`MAX_RECORDS_PER_TICK`] records.
pub fn check_count(count: u32) -> Result<(), String> {
    if count > MAX_RECORDS_PER_TICK {
        return Err(format!(
            "tick count {count} exceeds the limit of {MAX_RECORDS_PER_TICK} records per tick"
        ));
    }
    Ok(())
}

/// Checks a `malformed_rate`-style probability: finite, within 0.0–1.0.
pub fn check_rate(key: &str, rate: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(crate::config::key_error(
            key,
            format_args!("must be between 0.0 and 1.0, got {rate}"),
        ));
    }
    Ok(())
}

/// A generator's list of names under `key` (`pairs`, `symbols`): the
/// configured list, or `default` when the key is absent; refused when empty
/// or when a name fails `valid` (the error says it is not `like`, e.g.
/// "a ticker like AAPL").
pub fn name_list(
    key: &str,
    configured: Option<Vec<String>>,
    default: &[&str],
    valid: fn(&str) -> bool,
    like: &str,
) -> Result<Vec<String>, String> {
    let names = configured.unwrap_or_else(|| default.iter().map(|n| n.to_string()).collect());
    if names.is_empty() {
        return Err(crate::config::key_error(key, "must not be empty"));
    }
    if let Some(bad) = names.iter().find(|n| !valid(n)) {
        return Err(crate::config::key_error(
            key,
            format_args!("{bad:?} is not {like}"),
        ));
    }
    Ok(names)
}

/// Which of `len` configured items record `index` of tick `number` (of
/// `count` records) is about: the items are cycled through across ticks, so
/// small ticks still cover every item over time.
pub fn cycle_index(number: u64, count: u32, index: u32, len: usize) -> usize {
    assert!(len > 0, "cycle_index over no items");
    let position = u128::from(number) * u128::from(count) + u128::from(index);
    (position % len as u128) as usize
}

/// A triangle wave in `[-1, 1]` with the given period, shifted by `phase_ms`:
/// a smooth-enough, exactly reproducible drift for prices over time.
pub fn wave(time_ms: i64, period_ms: i64, phase_ms: u64) -> f64 {
    assert!(period_ms > 0, "wave period must be positive");
    let shift = (phase_ms % period_ms as u64) as i64;
    let t = time_ms.wrapping_add(shift).rem_euclid(period_ms);
    let phase = t as f64 / period_ms as f64; // [0, 1)
    4.0 * (phase - 0.5).abs() - 1.0
}

/// Writes `units / 10^decimals` as fixed-point decimal text, exactly
/// (`fixed_decimal(108412, 5)` is `"1.08412"`).
pub fn fixed_decimal(units: i64, decimals: u32) -> String {
    let scale = 10i64.pow(decimals);
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    let scale = scale as u64;
    if decimals == 0 {
        return format!("{sign}{abs}");
    }
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = decimals as usize
    )
}

/// Rounds `value * 10^decimals` to the nearest integer (ties away from zero).
pub fn to_units(value: f64, decimals: u32) -> i64 {
    (value * 10f64.powi(decimals as i32)).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_limit() {
        assert!(check_count(0).is_ok());
        assert!(check_count(MAX_RECORDS_PER_TICK).is_ok());
        let err = check_count(MAX_RECORDS_PER_TICK + 1).unwrap_err();
        assert!(err.contains("exceeds the limit"), "{err}");
    }

    #[test]
    fn rate_range() {
        for ok in [0.0, 0.5, 1.0] {
            assert!(check_rate("malformed_rate", ok).is_ok());
        }
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            let err = check_rate("malformed_rate", bad).unwrap_err();
            assert!(err.contains("key `malformed_rate`"), "{err}");
        }
    }

    #[test]
    fn name_lists_default_and_refuse_empty_or_invalid_names() {
        let upper = |n: &str| n.chars().all(|c| c.is_ascii_uppercase());
        let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            name_list("symbols", None, &["A", "B"], upper, "a ticker").unwrap(),
            ["A", "B"]
        );
        assert_eq!(
            name_list("symbols", list(&["C"]), &["A"], upper, "a ticker").unwrap(),
            ["C"]
        );
        let empty = name_list("symbols", list(&[]), &["A"], upper, "a ticker").unwrap_err();
        assert_eq!(empty, "invalid config: key `symbols`: must not be empty");
        let bad = name_list("pairs", list(&["A", "b"]), &["A"], upper, "a pair").unwrap_err();
        assert_eq!(bad, "invalid config: key `pairs`: \"b\" is not a pair");
    }

    #[test]
    fn cycling() {
        assert_eq!(cycle_index(0, 3, 0, 8), 0);
        assert_eq!(cycle_index(0, 3, 2, 8), 2);
        assert_eq!(cycle_index(1, 3, 0, 8), 3);
        assert_eq!(cycle_index(2, 3, 2, 8), 0);
        assert_eq!(cycle_index(u64::MAX, u32::MAX, u32::MAX, 7), {
            let p = u128::from(u64::MAX) * u128::from(u32::MAX) + u128::from(u32::MAX);
            (p % 7) as usize
        });
    }

    #[test]
    fn wave_shape() {
        assert_eq!(wave(0, 100, 0), 1.0);
        assert_eq!(wave(50, 100, 0), -1.0);
        assert_eq!(wave(25, 100, 0), 0.0);
        assert_eq!(wave(100, 100, 0), 1.0);
        assert_eq!(wave(-50, 100, 0), -1.0);
        assert_eq!(wave(0, 100, 25), 0.0);
        for t in -1000..1000 {
            assert!((-1.0..=1.0).contains(&wave(t * 37, 1000, 3)));
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(fixed_decimal(108_412, 5), "1.08412");
        assert_eq!(fixed_decimal(5, 5), "0.00005");
        assert_eq!(fixed_decimal(151_203, 3), "151.203");
        assert_eq!(fixed_decimal(-1_50, 2), "-1.50");
        assert_eq!(fixed_decimal(300, 0), "300");
        assert_eq!(to_units(1.084_125, 5), 108_413);
        assert_eq!(to_units(189.234, 2), 18_923);
    }
}

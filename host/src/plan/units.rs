//! Durations (`250ms`, `1.5s`, `2m`, `1h`) and sizes (`512KiB`, `8MiB`, `1GB`).

use std::time::Duration;

fn split_number(text: &str) -> Result<(f64, &str), String> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    Ok((n, unit.trim()))
}

/// Parses a duration with a unit: `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (n, unit) = split_number(text)?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "" => {
            return Err(format!(
                "{text:?} needs a unit: ms, s, m or h (e.g. \"250ms\")"
            ));
        }
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is out of range"))
}

/// Parses a byte size: a number with an optional unit (B, KB, KiB, MB, MiB,
/// GB, GiB).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let (n, unit) = split_number(text)?;
    let mult: f64 = match unit {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "KiB" => 1024.0,
        "MB" => 1e6,
        "MiB" => 1024.0 * 1024.0,
        "GB" => 1e9,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use B, KB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes > usize::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(
            parse_duration("5 fortnights")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1KB").unwrap(), 1000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("3 parsecs").is_err());
    }
}

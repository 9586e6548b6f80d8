//! Splitting raw records into text lines.

/// The record's bytes as UTF-8 text.
pub fn text(data: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(data).map_err(|e| format!("record is not valid UTF-8: {e}"))
}

/// Parses a line-oriented record: every non-blank line (`\n` or `\r\n`
/// terminated) goes through `parse_line`, which yields one item each.
///
/// A record with no non-blank line is rejected as `empty record`. When the
/// record holds more than one line, a line's error is prefixed with
/// `line N: ` (1-based, counting blank lines too); the first bad line rejects
/// the whole record.
pub fn parse_lines<T>(
    data: &[u8],
    mut parse_line: impl FnMut(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let text = text(data)?;
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let Some(&(first_no, first)) = lines.peek() else {
        return Err("empty record".to_string());
    };
    lines.next();
    if lines.peek().is_none() {
        return Ok(vec![parse_line(first)?]);
    }
    let mut out = vec![parse_line(first).map_err(|e| format!("line {}: {e}", first_no + 1))?];
    for (no, line) in lines {
        out.push(parse_line(line).map_err(|e| format!("line {}: {e}", no + 1))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upper(line: &str) -> Result<String, String> {
        if line.contains('!') {
            Err(format!("bang in {line:?}"))
        } else {
            Ok(line.to_uppercase())
        }
    }

    #[test]
    fn single_line() {
        assert_eq!(parse_lines(b"abc", upper), Ok(vec!["ABC".to_string()]));
        assert_eq!(parse_lines(b"abc\r\n", upper), Ok(vec!["ABC".to_string()]));
        assert_eq!(parse_lines(b"a!", upper), Err("bang in \"a!\"".to_string()));
    }

    #[test]
    fn several_lines() {
        assert_eq!(
            parse_lines(b"a\n\nb\r\n", upper),
            Ok(vec!["A".to_string(), "B".to_string()])
        );
        assert_eq!(
            parse_lines(b"a\n\nb!\n", upper),
            Err("line 3: bang in \"b!\"".to_string())
        );
        assert_eq!(
            parse_lines(b"a!\nb\n", upper),
            Err("line 1: bang in \"a!\"".to_string())
        );
    }

    #[test]
    fn empty_and_invalid() {
        assert_eq!(parse_lines(b"", upper), Err("empty record".to_string()));
        assert_eq!(
            parse_lines(b" \n\r\n", upper),
            Err("empty record".to_string())
        );
        assert!(
            parse_lines(b"\xff", upper)
                .unwrap_err()
                .starts_with("record is not valid UTF-8")
        );
    }
}

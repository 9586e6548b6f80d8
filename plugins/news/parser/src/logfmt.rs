//! A small logfmt tokenizer: `key=value key="quoted value" flag`.
//!
//! Pairs are separated by spaces or tabs. A value is either unquoted (up to
//! the next space or tab) or double-quoted, where `\"` is a quote, `\\` a
//! backslash, `\n`, `\r` and `\t` the usual control characters, and any other
//! backslash is kept as it is. A key without `=` has the empty value.
//! Errors name the key they are about.

use std::borrow::Cow;

/// One `key=value` pair.
pub type Pair<'a> = (&'a str, Cow<'a, str>);

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Splits a line into its pairs, in order (duplicates are kept; the caller
/// decides about them).
pub fn split_pairs(line: &str) -> Result<Vec<Pair<'_>>, String> {
    let b = line.as_bytes();
    let len = b.len();
    let mut pairs = Vec::new();
    let mut i = 0;
    loop {
        while i < len && is_space(b[i]) {
            i += 1;
        }
        if i == len {
            return Ok(pairs);
        }
        let start = i;
        while i < len && !is_space(b[i]) && b[i] != b'=' {
            if b[i] == b'"' {
                return Err(format!("quote in a key at offset {i}"));
            }
            i += 1;
        }
        let key = &line[start..i];
        if key.is_empty() {
            return Err(format!("empty key at offset {i}"));
        }
        if i == len || b[i] != b'=' {
            pairs.push((key, Cow::Borrowed("")));
            continue;
        }
        i += 1; // '='
        if i < len && b[i] == b'"' {
            i += 1;
            let mut owned: Option<String> = None;
            let mut seg = i;
            loop {
                let Some(offset) = b[i..].iter().position(|c| *c == b'"' || *c == b'\\') else {
                    return Err(format!("unterminated quote in the value of `{key}`"));
                };
                let j = i + offset;
                if b[j] == b'"' {
                    let value = match owned.take() {
                        Some(mut s) => {
                            s.push_str(&line[seg..j]);
                            Cow::Owned(s)
                        }
                        None => Cow::Borrowed(&line[seg..j]),
                    };
                    pairs.push((key, value));
                    i = j + 1;
                    break;
                }
                // A backslash.
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&line[seg..j]);
                let Some(&escaped) = b.get(j + 1) else {
                    return Err(format!("unterminated quote in the value of `{key}`"));
                };
                match escaped {
                    b'"' => s.push('"'),
                    b'\\' => s.push('\\'),
                    b'n' => s.push('\n'),
                    b'r' => s.push('\r'),
                    b't' => s.push('\t'),
                    _ => {
                        // Unknown escape: keep the backslash, and let the next
                        // character (maybe multi-byte) be copied as text.
                        s.push('\\');
                        i = j + 1;
                        seg = i;
                        continue;
                    }
                }
                i = j + 2;
                seg = i;
            }
            if i < len && !is_space(b[i]) {
                return Err(format!("text after the closing quote of `{key}`"));
            }
        } else {
            let start = i;
            while i < len && !is_space(b[i]) {
                i += 1;
            }
            pairs.push((key, Cow::Borrowed(&line[start..i])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(line: &str) -> Vec<(String, String)> {
        split_pairs(line)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_owned()))
            .collect()
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn plain_pairs() {
        assert_eq!(pairs("a=1 b=two"), vec![p("a", "1"), p("b", "two")]);
        assert_eq!(pairs("  a=1\t\tb=2  "), vec![p("a", "1"), p("b", "2")]);
        assert_eq!(pairs("a= b"), vec![p("a", ""), p("b", "")]);
        assert_eq!(pairs("flag x=1"), vec![p("flag", ""), p("x", "1")]);
        assert_eq!(
            pairs("u=https://x.y/?a=b"),
            vec![p("u", "https://x.y/?a=b")]
        );
        assert!(pairs("").is_empty());
    }

    #[test]
    fn quoted_values_and_escapes() {
        assert_eq!(
            pairs(r#"h="a b, c" x=1"#),
            vec![p("h", "a b, c"), p("x", "1")]
        );
        assert_eq!(pairs(r#"h="say \"hi\"""#), vec![p("h", r#"say "hi""#)]);
        assert_eq!(pairs(r#"h="back\\slash""#), vec![p("h", r"back\slash")]);
        assert_eq!(pairs(r#"h="tab\there\nnl""#), vec![p("h", "tab\there\nnl")]);
        assert_eq!(pairs(r#"h="odd \q é\é""#), vec![p("h", r"odd \q é\é")]);
        assert_eq!(pairs(r#"h="""#), vec![p("h", "")]);
        assert_eq!(pairs(r#"h="a=b c=d""#), vec![p("h", "a=b c=d")]);
        assert_eq!(pairs(r#"h="\\""#), vec![p("h", "\\")]);
    }

    #[test]
    fn borrows_unless_escaped() {
        let v = split_pairs(r#"a="plain" b="e\"s""#).unwrap();
        assert!(matches!(v[0].1, Cow::Borrowed("plain")));
        assert!(matches!(v[1].1, Cow::Owned(_)));
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            split_pairs(r#"a=1 headline="open"#).unwrap_err(),
            "unterminated quote in the value of `headline`"
        );
        assert_eq!(
            split_pairs(r#"headline="ends in escape\""#).unwrap_err(),
            "unterminated quote in the value of `headline`"
        );
        assert_eq!(
            split_pairs(r#"headline="x\"#).unwrap_err(),
            "unterminated quote in the value of `headline`"
        );
        assert_eq!(
            split_pairs(r#"source="A"B x=1"#).unwrap_err(),
            "text after the closing quote of `source`"
        );
        assert_eq!(split_pairs("a=1 =2").unwrap_err(), "empty key at offset 4");
        assert_eq!(
            split_pairs(r#"a"b=1"#).unwrap_err(),
            "quote in a key at offset 1"
        );
    }
}

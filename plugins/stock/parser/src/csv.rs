//! A small RFC 4180 CSV splitter.
//!
//! Fields are separated by `,` and rows by `\n` or `\r\n`. A field may be
//! quoted with `"`; inside quotes, `,` and line breaks are literal and `""`
//! stands for one `"`. A quote inside an unquoted field, text between a
//! closing quote and the next separator, and a quote left open are errors.
//! Blank lines are skipped.

use std::borrow::Cow;

/// What is wrong with a row, and in which field (0-based column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvError {
    /// A quoted field is never closed.
    UnterminatedQuote { row: usize, column: usize },
    /// A `"` inside an unquoted field.
    StrayQuote { row: usize, column: usize },
    /// Text after a closing quote, before the next `,` or line break.
    TextAfterQuote { row: usize, column: usize },
}

impl CsvError {
    /// The 1-based row (counting non-blank rows) the error is in.
    pub fn row(&self) -> usize {
        match self {
            CsvError::UnterminatedQuote { row, .. }
            | CsvError::StrayQuote { row, .. }
            | CsvError::TextAfterQuote { row, .. } => *row,
        }
    }

    /// The 0-based column the error is in.
    pub fn column(&self) -> usize {
        match self {
            CsvError::UnterminatedQuote { column, .. }
            | CsvError::StrayQuote { column, .. }
            | CsvError::TextAfterQuote { column, .. } => *column,
        }
    }

    /// What went wrong, without the position.
    pub fn message(&self) -> &'static str {
        match self {
            CsvError::UnterminatedQuote { .. } => "unterminated quoted field",
            CsvError::StrayQuote { .. } => "quote inside an unquoted field",
            CsvError::TextAfterQuote { .. } => "text after the closing quote",
        }
    }
}

/// Splits `text` into rows of fields. Fields borrow from `text` unless they
/// contained `""`.
pub fn split_rows(text: &str) -> Result<Vec<Vec<Cow<'_, str>>>, CsvError> {
    let b = text.as_bytes();
    let len = b.len();
    let mut rows = Vec::new();
    let mut i = 0;
    while i < len {
        let row_no = rows.len() + 1;
        let mut fields: Vec<Cow<str>> = Vec::new();
        let mut blank = true;
        loop {
            let column = fields.len();
            if i < len && b[i] == b'"' {
                blank = false;
                i += 1;
                let mut owned: Option<String> = None;
                let mut seg_start = i;
                loop {
                    let Some(offset) = b[i..].iter().position(|c| *c == b'"') else {
                        return Err(CsvError::UnterminatedQuote {
                            row: row_no,
                            column,
                        });
                    };
                    let j = i + offset;
                    if j + 1 < len && b[j + 1] == b'"' {
                        // `""`: keep one quote and go on.
                        owned
                            .get_or_insert_with(String::new)
                            .push_str(&text[seg_start..=j]);
                        i = j + 2;
                        seg_start = i;
                    } else {
                        let field = match owned.take() {
                            Some(mut s) => {
                                s.push_str(&text[seg_start..j]);
                                Cow::Owned(s)
                            }
                            None => Cow::Borrowed(&text[seg_start..j]),
                        };
                        fields.push(field);
                        i = j + 1;
                        break;
                    }
                }
                let at_separator = i == len
                    || b[i] == b','
                    || b[i] == b'\n'
                    || (b[i] == b'\r' && (i + 1 == len || b[i + 1] == b'\n'));
                if !at_separator {
                    return Err(CsvError::TextAfterQuote {
                        row: row_no,
                        column,
                    });
                }
            } else {
                let start = i;
                while i < len && b[i] != b',' && b[i] != b'\n' {
                    if b[i] == b'"' {
                        return Err(CsvError::StrayQuote {
                            row: row_no,
                            column,
                        });
                    }
                    i += 1;
                }
                let mut end = i;
                if end > start && b[end - 1] == b'\r' {
                    end -= 1;
                }
                if end > start || (i < len && b[i] == b',') {
                    blank = false;
                }
                fields.push(Cow::Borrowed(&text[start..end]));
            }
            if i < len && b[i] == b',' {
                i += 1;
                if i == len {
                    // A trailing comma at the very end: one more empty field.
                    fields.push(Cow::Borrowed(""));
                    break;
                }
                continue;
            }
            if i < len && b[i] == b'\r' {
                i += 1;
            }
            if i < len && b[i] == b'\n' {
                i += 1;
            }
            break;
        }
        if !blank {
            rows.push(fields);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<Vec<String>> {
        split_rows(text)
            .unwrap()
            .into_iter()
            .map(|r| r.into_iter().map(|f| f.into_owned()).collect())
            .collect()
    }

    #[test]
    fn plain_fields() {
        assert_eq!(rows("a,b,c"), vec![vec!["a", "b", "c"]]);
        assert_eq!(rows("a,b,c\n"), vec![vec!["a", "b", "c"]]);
        assert_eq!(rows("a,b\r\nc,d\r\n"), vec![vec!["a", "b"], vec!["c", "d"]]);
        assert_eq!(rows("a,,c"), vec![vec!["a", "", "c"]]);
        assert_eq!(rows("a,b,"), vec![vec!["a", "b", ""]]);
        assert_eq!(rows(",a"), vec![vec!["", "a"]]);
        assert_eq!(rows(" a , b "), vec![vec![" a ", " b "]]);
    }

    #[test]
    fn quoted_fields() {
        assert_eq!(rows(r#""a,b",c"#), vec![vec!["a,b", "c"]]);
        assert_eq!(rows(r#"x,"say ""hi""""#), vec![vec!["x", r#"say "hi""#]]);
        assert_eq!(rows(r#""""#), vec![vec![""]]);
        assert_eq!(rows(r#""""""#), vec![vec!["\""]]);
        assert_eq!(
            rows("\"line\nbreak\",z\r\n"),
            vec![vec!["line\nbreak", "z"]]
        );
        assert_eq!(rows("\"a\"\r\n\"b\""), vec![vec!["a"], vec!["b"]]);
        assert_eq!(rows("\"a\",\"\""), vec![vec!["a", ""]]);
        assert_eq!(rows("\"é,ü\",ß"), vec![vec!["é,ü", "ß"]]);
    }

    #[test]
    fn borrows_unless_escaped() {
        let r = split_rows(r#""plain","with ""q""""#).unwrap();
        assert!(matches!(r[0][0], Cow::Borrowed("plain")));
        assert!(matches!(r[0][1], Cow::Owned(_)));
    }

    #[test]
    fn blank_lines_are_skipped() {
        assert!(rows("").is_empty());
        assert!(rows("\n\r\n\n").is_empty());
        assert_eq!(rows("\na\n\nb\n"), vec![vec!["a"], vec!["b"]]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            split_rows("a,\"open"),
            Err(CsvError::UnterminatedQuote { row: 1, column: 1 })
        );
        assert_eq!(
            split_rows("a\nb,c,\"x\"\"y"),
            Err(CsvError::UnterminatedQuote { row: 2, column: 2 })
        );
        assert_eq!(
            split_rows("a,b\"c"),
            Err(CsvError::StrayQuote { row: 1, column: 1 })
        );
        assert_eq!(
            split_rows("\"a\"b,c"),
            Err(CsvError::TextAfterQuote { row: 1, column: 0 })
        );
        assert_eq!(
            split_rows("\"a\"\rb"),
            Err(CsvError::TextAfterQuote { row: 1, column: 0 })
        );
        let e = CsvError::StrayQuote { row: 3, column: 4 };
        assert_eq!((e.row(), e.column()), (3, 4));
        assert_eq!(e.message(), "quote inside an unquoted field");
    }
}

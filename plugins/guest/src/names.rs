//! Name checks shared by a feed's generator, parser and transform.

/// Whether `s` is a currency pair written `AAA/BBB` (two ISO-4217-style
/// codes of three upper-case ASCII letters).
pub fn is_currency_pair(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7 && b[3] == b'/' && b[..3].iter().chain(&b[4..]).all(u8::is_ascii_uppercase)
}

/// Whether `s` is a ticker symbol: 1–10 characters, an upper-case ASCII
/// letter first, then upper-case letters, digits, `.` or `-` (`BRK.B`,
/// `RDS-A`).
pub fn is_ticker(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=10).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs() {
        assert!(is_currency_pair("EUR/USD"));
        assert!(is_currency_pair("USD/JPY"));
        for bad in [
            "EURUSD", "eur/usd", "EUR/US", "EUR-USD", "EUR/USDX", "", "E1R/USD", "EUR/ USD",
        ] {
            assert!(!is_currency_pair(bad), "{bad}");
        }
    }

    #[test]
    fn tickers() {
        for good in ["A", "AAPL", "BRK.B", "RDS-A", "X1", "ABCDEFGHIJ"] {
            assert!(is_ticker(good), "{good}");
        }
        for bad in [
            "",
            "aapl",
            "1AB",
            ".A",
            "ABCDEFGHIJK",
            "AA PL",
            "AAPL$",
            "ÄPL",
        ] {
            assert!(!is_ticker(bad), "{bad}");
        }
    }
}

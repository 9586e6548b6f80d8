//! The lexer of the reader: Rust source as the tokens that matter for
//! paths, with comments and literals skipped.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// The tokens of `src` that matter for paths, each with its line (1-based).
/// Comments, string, byte-string, raw-string and character literals are
/// skipped; lifetimes and numbers are dropped.
pub(super) fn tokenize(src: &str) -> Vec<(Tok, usize)> {
    let mut lx = Lexer {
        c: src.chars().collect(),
        i: 0,
        line: 1,
        out: Vec::new(),
    };
    while lx.i < lx.c.len() {
        let ch = lx.c[lx.i];
        if ch == '\n' {
            lx.line += 1;
            lx.i += 1;
        } else if ch.is_whitespace() {
            lx.i += 1;
        } else if ch == '/' && lx.at(1) == '/' {
            lx.skip_line_comment();
        } else if ch == '/' && lx.at(1) == '*' {
            lx.skip_block_comment();
        } else if ch == '"' {
            lx.skip_string();
        } else if ch == '\'' {
            lx.skip_char_or_quote();
        } else if ch.is_alphabetic() || ch == '_' {
            lx.word();
        } else if ch.is_ascii_digit() {
            lx.skip_word_chars();
        } else if ch == ':' && lx.at(1) == ':' {
            lx.out.push((Tok::Sep, lx.line));
            lx.i += 2;
        } else {
            lx.out.push((Tok::Punct(ch), lx.line));
            lx.i += 1;
        }
    }
    lx.out
}

/// `tokenize`'s state: the characters, where it is, and what it found.
struct Lexer {
    c: Vec<char>,
    i: usize,
    line: usize,
    out: Vec<(Tok, usize)>,
}

impl Lexer {
    /// The character `ahead` places on (`\0` past the end).
    fn at(&self, ahead: usize) -> char {
        self.c.get(self.i + ahead).copied().unwrap_or('\0')
    }

    /// Steps over one character, counting lines.
    fn bump(&mut self) {
        self.line += usize::from(self.c[self.i] == '\n');
        self.i += 1;
    }

    fn skip_line_comment(&mut self) {
        while self.i < self.c.len() && self.c[self.i] != '\n' {
            self.i += 1;
        }
    }

    /// A `/* … */` comment, nested ones included.
    fn skip_block_comment(&mut self) {
        let mut depth = 0;
        while self.i < self.c.len() {
            if self.c[self.i] == '/' && self.at(1) == '*' {
                depth += 1;
                self.i += 2;
            } else if self.c[self.i] == '*' && self.at(1) == '/' {
                depth -= 1;
                self.i += 2;
                if depth == 0 {
                    break;
                }
            } else {
                self.bump();
            }
        }
    }

    /// A `"…"` literal (the `b` or `c` before it was lexed as a word).
    fn skip_string(&mut self) {
        self.i += 1;
        while self.i < self.c.len() && self.c[self.i] != '"' {
            self.line += usize::from(self.c[self.i] == '\n');
            self.i += if self.c[self.i] == '\\' { 2 } else { 1 };
        }
        self.i += 1;
    }

    /// A character literal, or the quote of a lifetime or label (whose name
    /// is lexed next as a word, and is never followed by `::`).
    fn skip_char_or_quote(&mut self) {
        if self.at(1) == '\\' {
            // An escaped character literal: '\n', '\'', '\u{..}'.
            self.i += 3;
            while self.i < self.c.len() && self.c[self.i] != '\'' {
                self.i += 1;
            }
            self.i += 1;
        } else if self.at(2) == '\'' {
            self.i += 3;
        } else {
            self.i += 1;
        }
    }

    fn skip_word_chars(&mut self) {
        while self.i < self.c.len() && (self.c[self.i].is_alphanumeric() || self.c[self.i] == '_') {
            self.i += 1;
        }
    }

    /// An identifier or keyword, or the prefix of a raw string (skipped
    /// with it) or of a raw identifier (`r#type`: the `#` is skipped and the
    /// name lexed next).
    fn word(&mut self) {
        let start = self.i;
        self.skip_word_chars();
        let word: String = self.c[start..self.i].iter().collect();
        let raw_string = matches!(word.as_str(), "r" | "br" | "cr")
            && (self.at(0) == '"' || (self.at(0) == '#' && matches!(self.at(1), '"' | '#')));
        if raw_string {
            self.skip_raw_string();
        } else if word == "r" && self.at(0) == '#' {
            self.i += 1;
        } else {
            self.out.push((Tok::Ident(word), self.line));
        }
    }

    /// The `#…"…"#…` of a raw string, after its `r`.
    fn skip_raw_string(&mut self) {
        let mut hashes = 0;
        while self.at(0) == '#' {
            hashes += 1;
            self.i += 1;
        }
        self.i += 1; // the opening quote
        while self.i < self.c.len() {
            if self.c[self.i] == '"' && (1..=hashes).all(|h| self.at(h) == '#') {
                self.i += 1 + hashes;
                break;
            }
            self.bump();
        }
    }
}

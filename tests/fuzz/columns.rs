//! Fuzz bytes into the contract's column structs: counts and offsets
//! mostly near the lengths they index, so that the checks pass often
//! enough to reach the readers behind them; sometimes past them or wild.

use pipehost::fuzzing::EventColumns;

/// Reads values off fuzz bytes; past the end, every byte is 0.
pub(super) struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

const ALPHABET: [char; 12] = [
    'a',
    'b',
    'Z',
    ' ',
    ',',
    '"',
    '\\',
    '\n',
    'é',
    '漢',
    '\u{10FFFF}',
    '\0',
];

impl<'a> Bytes<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }

    pub(super) fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// 0..=max.
    pub(super) fn count(&mut self, max: usize) -> usize {
        usize::from(self.byte()) % (max + 1)
    }

    /// Usually `n`, sometimes one more or one less: parallel columns.
    pub(super) fn skewed(&mut self, n: usize) -> usize {
        match self.byte() {
            0xf0..=0xf7 => n + 1,
            0xf8..=0xff => n.saturating_sub(1),
            _ => n,
        }
    }

    /// An index meant for something `n` long: mostly `0..n`, sometimes
    /// `n` or `n + 1`, rarely wild.
    pub(super) fn index(&mut self, n: usize) -> u32 {
        match self.byte() {
            0xff => u32::MAX,
            0xfe => u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()]),
            b @ 0..0xf0 if n > 0 => (usize::from(b) % n) as u32,
            b => (usize::from(b) % (n + 2)) as u32,
        }
    }

    /// An offset into `text`: mostly on a character boundary.
    pub(super) fn offset(&mut self, text: &str) -> u32 {
        match self.byte() {
            0..0xe0 => {
                let at = self.count(text.len());
                (0..=at)
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0) as u32
            }
            _ => self.index(text.len() + 1),
        }
    }

    pub(super) fn i64(&mut self) -> i64 {
        match self.byte() {
            0xff => i64::MIN,
            0xfe => i64::MAX,
            0xfd => i64::from_le_bytes(std::array::from_fn(|_| self.byte())),
            b => i64::from(b) * 86_400_000_000 - 1,
        }
    }

    pub(super) fn text(&mut self, max: usize) -> String {
        (0..self.count(max))
            .map(|_| ALPHABET[usize::from(self.byte()) % ALPHABET.len()])
            .collect()
    }

    /// [`Self::ends`] of a [`Self::skewed`] count.
    pub(super) fn skewed_ends(&mut self, n: usize, total: usize) -> Vec<u32> {
        let n = self.skewed(n);
        self.ends(n, total)
    }

    /// End offsets of `n` pieces of `text`: mostly in order, on character
    /// boundaries and covering it.
    pub(super) fn text_ends(&mut self, n: usize, text: &str) -> Vec<u32> {
        let n = self.skewed(n);
        if self.byte().is_multiple_of(4) {
            return self.ends(n, text.len());
        }
        let mut ends: Vec<u32> = (0..n).map(|_| self.offset(text)).collect();
        ends.sort_unstable();
        if let Some(last) = ends.last_mut() {
            *last = text.len() as u32;
        }
        ends
    }

    /// End offsets of `n` pieces of something `total` long: in order and
    /// covering it when the next byte is even, as the bytes say otherwise.
    pub(super) fn ends(&mut self, n: usize, total: usize) -> Vec<u32> {
        let in_order = self.byte().is_multiple_of(2);
        let mut ends: Vec<u32> = (0..n).map(|_| self.index(total)).collect();
        if in_order {
            ends.sort_unstable();
            if let Some(last) = ends.last_mut() {
                *last = total as u32;
            }
        }
        ends
    }
}

/// An event batch's columns as a plugin might return them.
pub(super) fn event_columns(b: &mut Bytes<'_>) -> EventColumns {
    let names: Vec<String> = (0..b.count(4)).map(|_| b.text(5)).collect();
    let keys = b.text(16);
    let text = b.text(24);
    let events = b.count(5);
    let fields = b.count(10);
    let (mut field_name, mut field_kind, mut field_bits) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..fields {
        field_name.push(b.index(names.len()));
        let kind = match b.byte() {
            k @ 0..0xf0 => k % 5,
            k => k,
        };
        field_kind.push(kind);
        field_bits.push(match kind {
            0 => i64::from(b.byte() % 2 + u8::from(b.byte() == 0xff) * 2),
            3 if !b.byte().is_multiple_of(8) => {
                let (x, y) = (b.offset(&text), b.offset(&text));
                let (start, end) = if !b.byte().is_multiple_of(8) {
                    (x.min(y), x.max(y))
                } else {
                    (x, y)
                };
                (u64::from(start) | u64::from(end) << 32) as i64
            }
            2 => f64::to_bits(match b.byte() {
                0xff => f64::NAN,
                0xfe => f64::NEG_INFINITY,
                0xfd => -0.0,
                0xfc => f64::MAX,
                x => f64::from(x) / 7.0 - 9.0,
            }) as i64,
            _ => b.i64(),
        });
    }
    EventColumns {
        event_dataset: (0..b.skewed(events))
            .map(|_| b.index(names.len()))
            .collect(),
        event_key_end: b.text_ends(events, &keys),
        event_time: (0..b.skewed(events)).map(|_| b.i64()).collect(),
        event_fields_end: b.skewed_ends(events, fields),
        field_name,
        field_kind,
        field_bits,
        names,
        keys,
        text,
    }
}

//! Counting CSV records as bytes stream past, and checking their shape, without parsing fields or copying.
//!
//! Records are not lines: a quoted field may hold newlines. In RFC 4180 CSV a newline ends a record exactly when an
//! even number of `"` precede it in the file (an escaped quote `""` counts twice), and a comma ends a field under
//! the same rule, so counting records and their fields needs only the positions of three bytes, found with
//! `memchr3` at several GB/s.

use memchr::memchr3_iter;

/// The most header bytes kept for reading the column names.
const HEADER_LIMIT: usize = 64 * 1024;

/// A running count over the chunks of one file: records, each record's fields against the header's, and the
/// header itself.
#[derive(Debug, Clone, Default)]
pub struct RecordCounter {
    in_quotes: bool,
    terminated_records: u64,
    /// Bytes seen since the last record-ending newline.
    pending: bool,
    /// Fields of the record being read so far (commas outside quotes, plus one).
    fields: u64,
    /// Fields of the header, once it ended.
    header_fields: Option<u64>,
    /// The header's bytes (at most [`HEADER_LIMIT`]).
    header: Vec<u8>,
    /// The first data record (1-based) whose field count differs from the header's, and that count.
    first_ragged: Option<(u64, u64)>,
}

impl RecordCounter {
    /// A counter at the start of a file.
    pub fn new() -> Self {
        Self { fields: 1, ..Self::default() }
    }

    /// Feeds the next chunk of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let mut last_newline = None;
        for at in memchr3_iter(b'"', b'\n', b',', chunk) {
            match chunk[at] {
                b'"' => self.in_quotes = !self.in_quotes,
                _ if self.in_quotes => {}
                b',' => self.fields += 1,
                _ => {
                    self.end_record(&chunk[last_newline.map_or(0, |n| n + 1)..at]);
                    last_newline = Some(at);
                }
            }
        }
        let rest = &chunk[last_newline.map_or(0, |n| n + 1)..];
        if self.header_fields.is_none() {
            self.keep_header(rest);
        }
        self.pending = !rest.is_empty();
    }

    fn end_record(&mut self, tail: &[u8]) {
        match self.header_fields {
            None => {
                self.keep_header(tail);
                self.header_fields = Some(self.fields);
            }
            Some(expected) if expected != self.fields && self.first_ragged.is_none() => {
                self.first_ragged = Some((self.terminated_records, self.fields));
            }
            Some(_) => {}
        }
        self.terminated_records += 1;
        self.fields = 1;
    }

    fn keep_header(&mut self, bytes: &[u8]) {
        let room = HEADER_LIMIT.saturating_sub(self.header.len());
        self.header.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Records in the file so far, the header included; a last record without a newline counts.
    pub fn records(&self) -> u64 {
        self.terminated_records + u64::from(self.pending)
    }

    /// Data records (header excluded) once the whole file is fed.
    pub fn data_records(&self) -> u64 {
        self.records().saturating_sub(1)
    }

    /// True when the file ended inside a quoted field: it was cut short.
    pub fn ends_inside_quotes(&self) -> bool {
        self.in_quotes
    }

    /// True when the file ended with a line terminator outside quotes (every record complete), or was empty.
    pub fn ends_with_terminator(&self) -> bool {
        !self.pending && !self.in_quotes
    }

    /// The first data record (1-based) whose field count differs from the header's, and its count; the last
    /// record is checked only once it ended.
    pub fn first_ragged(&self) -> Option<(u64, u64)> {
        self.first_ragged
    }

    /// Fields in the header, once the header ended.
    pub fn header_fields(&self) -> Option<u64> {
        self.header_fields
    }

    /// The header's column names (RFC 4180 unquoted, a trailing `\r` dropped), from its first 64 KiB.
    pub fn header(&self) -> Vec<String> {
        let line = self.header.strip_suffix(b"\r").unwrap_or(&self.header);
        let mut names = Vec::new();
        let mut name = Vec::new();
        let mut quoted = false;
        let mut bytes = line.iter().peekable();
        while let Some(&byte) = bytes.next() {
            match byte {
                b'"' if quoted && bytes.peek() == Some(&&b'"') => {
                    bytes.next();
                    name.push(b'"');
                }
                b'"' => quoted = !quoted,
                b',' if !quoted => names.push(String::from_utf8_lossy(&std::mem::take(&mut name)).into_owned()),
                _ => name.push(byte),
            }
        }
        names.push(String::from_utf8_lossy(&name).into_owned());
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str, chunk: usize) -> RecordCounter {
        let mut counter = RecordCounter::new();
        for piece in text.as_bytes().chunks(chunk.max(1)) {
            counter.feed(piece);
        }
        counter
    }

    /// An independent RFC 4180 parser's opinion.
    fn reference(text: &str) -> u64 {
        csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes()).records().count() as u64
    }

    #[test]
    fn quoted_newlines_and_escaped_quotes_do_not_end_records() {
        let text = "A.Id,A.Notes\n1,\"line one\nline two\"\n2,\"say \"\"hi\"\"\r\nthere\"\r\n3,plain\n";
        for chunk in [1, 2, 3, 7, 1000] {
            let counter = count(text, chunk);
            assert_eq!(counter.data_records(), 3, "chunk {chunk}");
            assert!(!counter.ends_inside_quotes());
        }
        assert_eq!(reference(text), 3);
    }

    #[test]
    fn a_last_record_without_newline_counts_and_a_header_only_file_has_none() {
        assert_eq!(count("h\n1\n2", 2).data_records(), 2);
        assert_eq!(count("h1,h2\n", 4).data_records(), 0);
        assert_eq!(count("h1,h2", 4).data_records(), 0);
        assert_eq!(count("", 4).data_records(), 0);
        assert!(count("h\n1,\"cut", 3).ends_inside_quotes());
    }

    #[test]
    fn a_file_cut_inside_its_last_record_does_not_end_with_a_terminator() {
        for chunk in [1, 2, 5, 100] {
            assert!(count("A.Id,A.X\n1,abc\n", chunk).ends_with_terminator());
            assert!(!count("A.Id,A.X\n1,abc\n2,ab", chunk).ends_with_terminator(), "chunk {chunk}");
            assert!(!count("A.Id,A.X\n1,\"a\nb", chunk).ends_with_terminator(), "chunk {chunk}");
            assert!(count("", chunk).ends_with_terminator());
        }
    }

    #[test]
    fn records_with_another_field_count_than_the_header_are_found() {
        let text = "A.Id,A.X\r\n1,\"a,b\"\r\n2\r\n3,c,d\r\n";
        for chunk in [1, 3, 100] {
            let counter = count(text, chunk);
            assert_eq!(counter.header_fields(), Some(2));
            assert_eq!(counter.first_ragged(), Some((2, 1)), "chunk {chunk}");
        }
        assert_eq!(count("A.Id,A.X\n1,\"a\nb,c\"\n", 2).first_ragged(), None);
    }

    #[test]
    fn the_header_is_read_with_quotes_across_chunks() {
        for chunk in [1, 4, 100] {
            let counter = count("Account.IsDeleted,\"Account.Id\",\"Odd \"\"name\"\", x\"\r\n1,2,3\r\n", chunk);
            assert_eq!(counter.header(), ["Account.IsDeleted", "Account.Id", "Odd \"name\", x"], "chunk {chunk}");
        }
        assert_eq!(count("{\"error\":1}", 3).header(), ["{error:1}"]);
    }

    #[test]
    fn agrees_with_an_rfc4180_parser_on_generated_files() {
        let pieces = ["a", "b,c", "\"q,1\"", "\"x\ny\"", "\"\"\"\"", "é", "\"a\"\"b\nc\"", ""];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let rows = 1 + next() % 20;
            let mut text = String::from("A.Id,A.X,A.Y\n");
            for _ in 0..rows {
                let fields: Vec<&str> = (0..3).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect();
                text.push_str(&fields.join(","));
                text.push_str(if next() % 2 == 0 { "\n" } else { "\r\n" });
            }
            let chunk = 1 + (next() % 17) as usize;
            assert_eq!(count(&text, chunk).data_records(), reference(&text), "{text:?}");
        }
    }
}

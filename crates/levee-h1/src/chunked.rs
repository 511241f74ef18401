//! The chunked transfer coding (RFC 9112 §7.1): decoded incrementally
//! from whatever bytes have arrived, every size, extension and line
//! ending checked, and encoded.

use crate::Error;

/// The longest chunk line extension kept (the bytes after the size up to
/// CRLF); longer is refused, as is a trailer section over its limit.
pub const MAX_EXTENSION: usize = 4096;
/// The longest trailer section.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// Where a chunked body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk size's hex digits (`digits` so far).
    Size {
        digits: u8,
    },
    /// After the size: extensions (`len` bytes so far), up to CR.
    Extension {
        len: usize,
        quoted: bool,
    },
    /// CR seen after the size line; LF next.
    SizeLf,
    /// Inside a chunk's data, this many bytes left.
    Data,
    /// After the data: CR, then LF.
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines (`len` bytes so far), `at_line_start`.
    Trailers {
        len: usize,
        at_line_start: bool,
    },
    /// CR of the final blank line seen; LF next.
    EndLf,
    /// CR inside a trailer line; LF next.
    TrailerLf {
        len: usize,
    },
    Done,
}

/// One step's outcome: how much input it used, and the body bytes in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Body data within the input consumed (`start..end`), if any.
    pub data: Option<(usize, usize)>,
}

/// A chunked body being decoded.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    size: u64,
    /// Bytes left of the current chunk.
    left: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
            left: 0,
        }
    }
}

impl Decoder {
    /// Whether the body, with its trailers, has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the last chunk has been read and the trailer section (at
    /// least its final CRLF) comes next: what each later step consumes
    /// belongs to it.
    pub fn in_trailers(&self) -> bool {
        matches!(
            self.state,
            State::Trailers { .. } | State::TrailerLf { .. } | State::EndLf
        )
    }

    /// Decodes from `input` up to the end of the next run of body data
    /// (or of the body, or of the input): call again with the input after
    /// `consumed` until done or the input is used up.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, Error> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => match hex(b) {
                    Some(d) => {
                        if digits == 16 {
                            return Err(Error::InvalidChunkSize);
                        }
                        self.size = self.size << 4 | u64::from(d);
                        self.state = State::Size { digits: digits + 1 };
                    }
                    None if digits == 0 => return Err(Error::InvalidChunkSize),
                    None => match b {
                        b'\r' => self.state = State::SizeLf,
                        b';' | b' ' | b'\t' => {
                            self.state = State::Extension {
                                len: 1,
                                quoted: false,
                            }
                        }
                        _ => return Err(Error::InvalidChunkSize),
                    },
                },
                State::Extension { len, quoted } => {
                    if len >= MAX_EXTENSION {
                        return Err(Error::InvalidChunkExtension);
                    }
                    match b {
                        b'\r' if !quoted => self.state = State::SizeLf,
                        b'"' => {
                            self.state = State::Extension {
                                len: len + 1,
                                quoted: !quoted,
                            }
                        }
                        // Control characters (LF among them) have no
                        // place in an extension (RFC 9112 §7.1.1).
                        b'\t' => {
                            self.state = State::Extension {
                                len: len + 1,
                                quoted,
                            }
                        }
                        c if c < 0x20 || c == 0x7f => return Err(Error::InvalidChunkExtension),
                        _ => {
                            self.state = State::Extension {
                                len: len + 1,
                                quoted,
                            }
                        }
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(Error::InvalidChunkSize);
                    }
                    if self.size == 0 {
                        self.state = State::Trailers {
                            len: 0,
                            at_line_start: true,
                        };
                        // The trailer section starts with the next step,
                        // so a caller can keep its bytes.
                        return Ok(Step {
                            consumed: i + 1,
                            data: None,
                        });
                    } else {
                        self.left = self.size;
                        self.size = 0;
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let n = (input.len() - i).min(usize::try_from(self.left).unwrap_or(usize::MAX));
                    self.left -= n as u64;
                    if self.left == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Step {
                        consumed: i + n,
                        data: Some((i, i + n)),
                    });
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(Error::InvalidChunk);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(Error::InvalidChunk);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::Trailers { len, at_line_start } => {
                    if len >= MAX_TRAILERS {
                        return Err(Error::InvalidChunkExtension);
                    }
                    match b {
                        b'\r' if at_line_start => self.state = State::EndLf,
                        b'\r' => self.state = State::TrailerLf { len: len + 1 },
                        b'\n' => return Err(Error::InvalidChunk),
                        _ => {
                            self.state = State::Trailers {
                                len: len + 1,
                                at_line_start: false,
                            }
                        }
                    }
                }
                State::TrailerLf { len } => {
                    if b != b'\n' {
                        return Err(Error::InvalidChunk);
                    }
                    self.state = State::Trailers {
                        len: len + 1,
                        at_line_start: true,
                    };
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(Error::InvalidChunk);
                    }
                    self.state = State::Done;
                    return Ok(Step {
                        consumed: i + 1,
                        data: None,
                    });
                }
                State::Done => break,
            }
            i += 1;
        }
        Ok(Step {
            consumed: i,
            data: None,
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends the line that starts a chunk of `len` bytes (`len` > 0).
pub fn chunk_start(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The CRLF that ends a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk and the end of an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of `input` decoded in one pass, fed `piece` bytes at a time.
    pub(crate) fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), Error> {
        let mut d = Decoder::default();
        let mut body = Vec::new();
        let mut at = 0;
        let mut avail = piece.min(input.len());
        while !d.is_done() {
            let step = d.step(&input[at..avail])?;
            if let Some((s, e)) = step.data {
                body.extend_from_slice(&input[at + s..at + e]);
            }
            at += step.consumed;
            if at == avail {
                if avail == input.len() {
                    break;
                }
                avail = (avail + piece).min(input.len());
            }
        }
        if d.is_done() {
            Ok((body, at))
        } else {
            Err(Error::InvalidChunk)
        }
    }

    #[test]
    fn chunks_with_extensions_and_trailers_decode_in_any_pieces() {
        let wire = b"5;name=\"va;l\"\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 100] {
            let (body, used) = decode(wire, piece).unwrap();
            assert_eq!(body, b"hello0123456789", "pieces of {piece}");
            assert_eq!(&wire[used..], b"NEXT");
        }
    }

    #[test]
    fn the_trailer_section_is_what_steps_consume_after_the_last_chunk() {
        let wire = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\nNEXT";
        for piece in [1, 4, 100] {
            let mut d = Decoder::default();
            let (mut at, mut trailers) = (0, Vec::new());
            while !d.is_done() {
                let end = (at + piece).min(wire.len());
                let in_trailers = d.in_trailers();
                let step = d.step(&wire[at..end]).unwrap();
                if in_trailers {
                    trailers.extend_from_slice(&wire[at..at + step.consumed]);
                }
                at += step.consumed;
            }
            assert_eq!(trailers, b"X-Sum: 1\r\nY: 2\r\n\r\n", "pieces of {piece}");
            let mut fields = Vec::new();
            crate::head::parse_trailers(&trailers, &mut fields).unwrap();
            assert_eq!(fields.len(), 2);
            assert_eq!(fields[1].value(&trailers), b"2");
        }
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for (wire, error) in [
            (&b"x\r\n"[..], Error::InvalidChunkSize),
            (b"\r\n", Error::InvalidChunkSize),
            (b"5\nhello\r\n0\r\n\r\n", Error::InvalidChunkSize),
            (b"5\r\nhelloX\r\n", Error::InvalidChunk),
            (b"5\r\nhello\n0\r\n\r\n", Error::InvalidChunk),
            (b"11111111111111111\r\n", Error::InvalidChunkSize),
            (b"5;a\nb\r\n", Error::InvalidChunkExtension),
            (b"0\r\nX: 1\n\r\n", Error::InvalidChunk),
            (b"0\r\n\n", Error::InvalidChunk),
        ] {
            assert_eq!(
                decode(wire, 100).map(|d| d.0),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let long_ext = format!("1;{}\r\n", "a".repeat(MAX_EXTENSION + 1));
        assert_eq!(
            decode(long_ext.as_bytes(), 100).map(|d| d.0),
            Err(Error::InvalidChunkExtension)
        );
    }

    #[test]
    fn sizes_are_written_in_hex() {
        for (len, text) in [
            (1, "1\r\n"),
            (15, "f\r\n"),
            (16, "10\r\n"),
            (65_536, "10000\r\n"),
        ] {
            let mut out = Vec::new();
            chunk_start(&mut out, len);
            assert_eq!(out, text.as_bytes());
        }
    }
}

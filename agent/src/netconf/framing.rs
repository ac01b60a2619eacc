//! RFC 6242 message framing, without I/O: feed bytes as they arrive, take whole messages out.
//!
//! - End-of-message (base:1.0, and always for `<hello>`): a message ends with `]]>]]>`.
//! - Chunked (base:1.1): `\n#<size>\n<size bytes>` repeated, then `\n##\n`; a size is 1 to
//!   4294967295 without leading zeros.
//!
//! A message larger than the limit is an error as soon as that is known: a chunk header that
//! claims more than the limit leaves is refused before a byte of it is stored, and an
//! end-of-message stream without its delimiter is refused once it passes the limit. After an
//! error the session is unusable (the stream has lost its frame): close it and reconnect.

/// Which framing the session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `]]>]]>` after each message (base:1.0).
    EndOfMessage,
    /// Chunks (base:1.1).
    Chunked,
}

/// Why the stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A message (or a chunk's claim) passes the limit.
    #[error("a message larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A chunk header is not `\n#<size>\n` nor `\n##\n`.
    #[error("bad chunk header: {0}")]
    BadChunkHeader(String),
}

/// The end-of-message delimiter.
pub const EOM: &[u8] = b"]]>]]>";
/// The longest chunk header: `\n#` + 10 digits + `\n`.
const MAX_HEADER: usize = 13;

#[derive(Debug)]
enum Chunk {
    /// Reading a header (its bytes so far).
    Header(Vec<u8>),
    /// Reading a chunk's data: bytes still to come.
    Data(usize),
}

/// Splits a byte stream into messages.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    limit: usize,
    /// The message being assembled.
    message: Vec<u8>,
    chunk: Chunk,
    failed: Option<FramingError>,
}

impl Decoder {
    /// A decoder for `framing` that refuses messages over `limit` bytes.
    pub fn new(framing: Framing, limit: usize) -> Decoder {
        Decoder {
            framing,
            limit,
            message: Vec::new(),
            chunk: Chunk::Header(Vec::new()),
            failed: None,
        }
    }

    /// Switches framing (after the hello exchange agreed on base:1.1). Bytes of a message
    /// under way are kept.
    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
    }

    /// Bytes of the message under way (for diagnostics and memory bounds).
    pub fn pending(&self) -> usize {
        self.message.len()
    }

    /// Feeds bytes; returns the messages they complete, in order.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<Vec<u8>>, FramingError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut out = Vec::new();
        while !data.is_empty() {
            let used = match self.framing {
                Framing::EndOfMessage => self.push_eom(data, &mut out),
                Framing::Chunked => self.push_chunked(data, &mut out),
            };
            match used {
                Ok(n) => data = data.get(n..).unwrap_or_default(),
                Err(e) => {
                    self.failed = Some(e.clone());
                    self.message = Vec::new();
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Takes bytes up to and including a delimiter, or all of them; returns how many.
    fn push_eom(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<usize, FramingError> {
        // The delimiter may straddle two pushes: look from a little before the new bytes.
        let from = self.message.len().saturating_sub(EOM.len() - 1);
        let before = self.message.len();
        self.message.extend_from_slice(data);
        let found = self
            .message
            .get(from..)
            .and_then(|tail| tail.windows(EOM.len()).position(|w| w == EOM))
            .map(|p| from + p);
        match found {
            Some(end) => {
                // The delimiter and what followed it leave the message; the loop is handed
                // the bytes after the delimiter again.
                self.message.truncate(end);
                let msg = std::mem::take(&mut self.message);
                if msg.len() > self.limit {
                    return Err(FramingError::TooLarge { limit: self.limit });
                }
                out.push(msg);
                Ok(end + EOM.len() - before)
            }
            None if self.message.len() > self.limit + EOM.len() => {
                Err(FramingError::TooLarge { limit: self.limit })
            }
            None => Ok(data.len()),
        }
    }

    fn push_chunked(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<usize, FramingError> {
        match &mut self.chunk {
            Chunk::Data(remaining) => {
                let take = (*remaining).min(data.len());
                self.message
                    .extend_from_slice(data.get(..take).unwrap_or_default());
                *remaining -= take;
                if *remaining == 0 {
                    self.chunk = Chunk::Header(Vec::new());
                }
                Ok(take)
            }
            Chunk::Header(header) => {
                let mut used = 0;
                for &b in data {
                    used += 1;
                    header.push(b);
                    if let Some(step) = parse_header(header)? {
                        match step {
                            Header::Size(n) => {
                                if self.message.len().saturating_add(n) > self.limit {
                                    return Err(FramingError::TooLarge { limit: self.limit });
                                }
                                self.chunk = Chunk::Data(n);
                            }
                            Header::End => {
                                if self.message.is_empty() {
                                    return Err(FramingError::BadChunkHeader(
                                        "end of chunks before any chunk".into(),
                                    ));
                                }
                                out.push(std::mem::take(&mut self.message));
                                self.chunk = Chunk::Header(Vec::new());
                            }
                        }
                        return Ok(used);
                    }
                }
                Ok(used)
            }
        }
    }
}

enum Header {
    Size(usize),
    End,
}

/// A complete header, `None` while more bytes are needed, or why it is wrong.
fn parse_header(h: &[u8]) -> Result<Option<Header>, FramingError> {
    let bad = |why: &str| {
        Err(FramingError::BadChunkHeader(format!(
            "{why} in {:?}",
            String::from_utf8_lossy(h)
        )))
    };
    match h {
        [] | [b'\n'] | [b'\n', b'#'] => Ok(None),
        [c, ..] if *c != b'\n' => bad("no newline"),
        [_, c, ..] if *c != b'#' => bad("no '#'"),
        [_, _, b'#'] => Ok(None),
        [_, _, b'#', b'\n'] => Ok(Some(Header::End)),
        [_, _, b'#', ..] => bad("'##' not followed by a newline"),
        [_, _, b'0', ..] => bad("a size with a leading zero (or zero)"),
        [_, _, digits @ .., b'\n'] => {
            if !digits.iter().all(u8::is_ascii_digit) || digits.is_empty() {
                return bad("a size that is not a number");
            }
            let n: u64 = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX);
            if n > u64::from(u32::MAX) {
                return bad("a size over 4294967295");
            }
            Ok(Some(Header::Size(usize::try_from(n).unwrap_or(usize::MAX))))
        }
        [_, _, rest @ ..] if !rest.iter().all(u8::is_ascii_digit) => {
            bad("a size that is not a number")
        }
        _ if h.len() >= MAX_HEADER => bad("a header too long"),
        _ => Ok(None),
    }
}

/// A message framed for sending.
pub fn encode(framing: Framing, message: &[u8]) -> Vec<u8> {
    match framing {
        Framing::EndOfMessage => [message, EOM].concat(),
        Framing::Chunked => {
            let mut out = format!("\n#{}\n", message.len()).into_bytes();
            out.extend_from_slice(message);
            out.extend_from_slice(b"\n##\n");
            out
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn end_of_message_across_pushes() {
        let mut d = Decoder::new(Framing::EndOfMessage, 1000);
        assert!(d.push(b"<hello/>]]>").unwrap().is_empty());
        let got = d.push(b"]]><rpc-reply/>]]>]]><x").unwrap();
        assert_eq!(got, vec![b"<hello/>".to_vec(), b"<rpc-reply/>".to_vec()]);
        assert_eq!(d.pending(), 2);
    }

    #[test]
    fn chunked_messages_and_their_errors() {
        let mut d = Decoder::new(Framing::Chunked, 100);
        let got = d.push(b"\n#4\n<rpc\n#2\n/>\n##\n\n#1\na\n##\n").unwrap();
        assert_eq!(got, vec![b"<rpc/>".to_vec(), b"a".to_vec()]);
        for (input, want) in [
            (&b"\n#4294967296\n"[..], "over 4294967295"),
            (b"\n#01\n", "leading zero"),
            (b"\n#0\n", "leading zero"),
            (b"\n#abc\n", "not a number"),
            (b"garbage", "no newline"),
            (b"\n##\n", "before any chunk"),
            (b"\n#12345678901234", "too long"),
        ] {
            let e = Decoder::new(Framing::Chunked, 100).push(input).unwrap_err();
            assert!(e.to_string().contains(want), "{input:?}: {e}");
        }
    }

    #[test]
    fn a_chunk_claiming_gigabytes_is_refused_before_it_is_stored() {
        let mut d = Decoder::new(Framing::Chunked, 1 << 20);
        let e = d.push(b"\n#4000000000\nxx").unwrap_err();
        assert_eq!(e, FramingError::TooLarge { limit: 1 << 20 });
        assert_eq!(d.pending(), 0);
        // Unusable afterwards.
        assert!(d.push(b"\n#1\na\n##\n").is_err());
    }

    #[test]
    fn an_endless_message_is_refused_at_the_limit() {
        let mut d = Decoder::new(Framing::EndOfMessage, 64);
        assert!(d.push(&[b'x'; 60]).unwrap().is_empty());
        assert!(d.push(&[b'x'; 20]).is_err());
        assert_eq!(d.pending(), 0, "nothing kept after the error");
        let mut d = Decoder::new(Framing::Chunked, 64);
        assert!(d.push(b"\n#40\n").unwrap().is_empty());
        assert!(d.push(&[b'y'; 40]).unwrap().is_empty());
        assert!(d.push(b"\n#40\n").is_err(), "80 bytes in all");
    }

    #[test]
    fn switching_to_chunked_after_hello() {
        let mut d = Decoder::new(Framing::EndOfMessage, 1000);
        assert_eq!(d.push(b"<hello/>]]>]]>").unwrap().len(), 1);
        d.set_framing(Framing::Chunked);
        assert_eq!(
            d.push(&encode(Framing::Chunked, b"<ok/>")).unwrap(),
            vec![b"<ok/>".to_vec()]
        );
    }

    proptest! {
        /// Any messages, framed either way and cut anywhere, come out whole and in order.
        #[test]
        fn framed_messages_survive_any_split(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200), 1..6),
            cuts in proptest::collection::vec(0usize..2000, 0..8),
            chunked in any::<bool>(),
        ) {
            let framing = if chunked { Framing::Chunked } else { Framing::EndOfMessage };
            // End-of-message framing cannot carry the delimiter itself.
            let messages: Vec<Vec<u8>> = messages
                .into_iter()
                .filter(|m| chunked || !m.windows(EOM.len()).any(|w| w == EOM))
                .collect();
            let stream: Vec<u8> = messages.iter().flat_map(|m| encode(framing, m)).collect();
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            points.sort_unstable();
            let mut d = Decoder::new(framing, 4096);
            let mut got = Vec::new();
            let mut at = 0;
            for p in points.into_iter().chain([stream.len()]) {
                got.extend(d.push(&stream[at..p]).unwrap());
                at = p;
            }
            prop_assert_eq!(got, messages);
        }
    }
}

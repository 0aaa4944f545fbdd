//! PEM decoding and encoding with the exact rules of Go's `encoding/pem`,
//! which External Secrets' functions are built on: which blocks are found
//! among junk, what `rest` is left, and how blocks are written back.
//! The `pem` crate is stricter and would find other blocks.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const PEM_START: &[u8] = b"\n-----BEGIN ";
const PEM_END: &[u8] = b"\n-----END ";
const PEM_END_OF_LINE: &[u8] = b"-----";

/// Go's `base64.StdEncoding`: padding required, trailing bits tolerated.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// One PEM block: its type, headers and decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub kind: Vec<u8>,
    pub headers: BTreeMap<Vec<u8>, Vec<u8>>,
    pub bytes: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Go's `getLine`: the line without its `\r\n`/`\n` and trailing blanks, and the rest.
fn get_line(data: &[u8]) -> (&[u8], &[u8]) {
    let (mut end, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (i, &data[i + 1..]),
        None => (data.len(), &data[data.len()..]),
    };
    if end < data.len() && end > 0 && data[end - 1] == b'\r' {
        end -= 1;
    }
    let mut line = &data[..end];
    while let [head @ .., b' ' | b'\t'] = line {
        line = head;
    }
    (line, rest)
}

fn trim_space(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c, tail @ ..] = s {
        s = tail;
    }
    while let [head @ .., b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c] = s {
        s = head;
    }
    s
}

/// Go's `base64.StdEncoding.Decode`, which skips `\r` and `\n`.
fn go_b64_decode(data: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = data
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    GO_STD.decode(clean).ok()
}

/// Go's `pem.Decode`: the next block and the input after it, or `None` and
/// the whole input when no further block parses.
///
/// Unlike a literal port, the search for the END marker is remembered across
/// failed candidates, so hostile input (thousands of BEGIN lines and no END)
/// costs linear time, not quadratic.
pub(crate) fn decode(data: &[u8]) -> (Option<Block>, &[u8]) {
    let mut rest = data;
    // Offset in `data` of the next "\n-----END " at or after some offset; None: none left.
    let mut end_cache: Option<(usize, Option<usize>)> = None;
    loop {
        if rest.starts_with(&PEM_START[1..]) {
            rest = &rest[PEM_START.len() - 1..];
        } else if let Some(i) = find(rest, PEM_START) {
            rest = &rest[i + PEM_START.len()..];
        } else {
            return (None, data);
        }

        let (type_line, after) = get_line(rest);
        rest = after;
        let Some(type_line) = type_line.strip_suffix(PEM_END_OF_LINE) else {
            continue;
        };

        let mut headers = BTreeMap::new();
        loop {
            if rest.is_empty() {
                return (None, data);
            }
            let (line, next) = get_line(rest);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                break;
            };
            headers.insert(
                trim_space(&line[..colon]).to_vec(),
                trim_space(&line[colon + 1..]).to_vec(),
            );
            rest = next;
        }

        let (end_index, end_trailer_index) =
            if headers.is_empty() && rest.starts_with(&PEM_END[1..]) {
                (0, PEM_END.len() - 1)
            } else {
                let offset = data.len() - rest.len();
                let found = match end_cache {
                    Some((from, None)) if from <= offset => None,
                    Some((from, Some(at))) if from <= offset && at >= offset => Some(at),
                    _ => {
                        let at = find(rest, PEM_END).map(|i| i + offset);
                        end_cache = Some((offset, at));
                        at
                    }
                };
                match found {
                    Some(at) => (at - offset, at - offset + PEM_END.len()),
                    None => continue,
                }
            };

        let end_trailer = &rest[end_trailer_index..];
        let trailer_len = type_line.len() + PEM_END_OF_LINE.len();
        if end_trailer.len() < trailer_len {
            continue;
        }
        let (end_trailer, rest_of_end_line) = end_trailer.split_at(trailer_len);
        if !end_trailer.starts_with(type_line) || !end_trailer.ends_with(PEM_END_OF_LINE) {
            continue;
        }
        if !get_line(rest_of_end_line).0.is_empty() {
            continue;
        }

        let body: Vec<u8> = rest[..end_index]
            .iter()
            .copied()
            .filter(|&b| b != b' ' && b != b'\t')
            .collect();
        let Some(bytes) = go_b64_decode(&body) else {
            continue;
        };
        let (_, after) = get_line(&rest[end_index + PEM_END.len() - 1..]);
        let block = Block {
            kind: type_line.to_vec(),
            headers,
            bytes,
        };
        return (Some(block), after);
    }
}

/// Go's `pem.Encode` (`Proc-Type` first, other headers sorted, 64-column base64).
pub(crate) fn encode_into(out: &mut Vec<u8>, block: &Block) {
    out.extend_from_slice(b"-----BEGIN ");
    out.extend_from_slice(&block.kind);
    out.extend_from_slice(b"-----\n");
    if !block.headers.is_empty() {
        let proc_type: &[u8] = b"Proc-Type";
        let first = block.headers.get_key_value(proc_type);
        for (k, v) in first.into_iter().chain(
            block
                .headers
                .iter()
                .filter(|(k, _)| k.as_slice() != proc_type),
        ) {
            out.extend_from_slice(k);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&block.bytes);
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END ");
    out.extend_from_slice(&block.kind);
    out.extend_from_slice(b"-----\n");
}

/// A block of `kind` holding `bytes`, without headers, PEM-encoded.
pub(crate) fn encode(kind: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 4 / 3 + 64);
    encode_into(
        &mut out,
        &Block {
            kind: kind.as_bytes().to_vec(),
            headers: BTreeMap::new(),
            bytes: bytes.to_vec(),
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_with_headers_and_leaves_the_rest() {
        let input =
            b"junk\n-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nA: b\n\nYWJj\n-----END X-----\ntail";
        let (block, rest) = decode(input);
        let block = block.expect("a block");
        assert_eq!(block.kind, b"X");
        assert_eq!(block.bytes, b"abc");
        assert_eq!(block.headers.len(), 2);
        assert_eq!(rest, b"tail");
        let mut out = Vec::new();
        encode_into(&mut out, &block);
        assert_eq!(
            out,
            b"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nA: b\n\nYWJj\n-----END X-----\n"
        );
    }

    #[test]
    fn begin_must_start_a_line_and_end_must_match() {
        assert!(
            decode(b"x-----BEGIN X-----\nYWJj\n-----END X-----\n")
                .0
                .is_none()
        );
        assert!(
            decode(b"-----BEGIN X-----\nYWJj\n-----END Y-----\n")
                .0
                .is_none()
        );
        assert!(
            decode(b"-----BEGIN X-----\nYWJ\n-----END X-----\n")
                .0
                .is_none()
        );
    }

    #[test]
    fn many_begins_without_end_are_linear() {
        // 200,000 BEGIN lines and no END: a literal port scans the rest once per line.
        let input = b"-----BEGIN A-----\nYWJj\n".repeat(200_000);
        let start = std::time::Instant::now();
        assert!(decode(&input).0.is_none());
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}

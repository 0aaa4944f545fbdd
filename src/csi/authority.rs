//! The `:authority` of requests on the CSI socket, made acceptable to h2.
//!
//! On a unix socket the authority means nothing, and gRPC clients disagree
//! on what to send: Go clients (kubelet, csi-sanity) send `localhost`, but
//! the gRPC C core (Python's grpcio, Ruby, C++) and grpc-java send the
//! socket's path, percent-encoded or not. h2, under tonic, refuses a request
//! whose authority is not a URI authority with RST_STREAM(PROTOCOL_ERROR),
//! and offers no switch. So the bytes a client sends pass through
//! [`AuthorityRewriter`] first, which sets every literal `:authority` to
//! `localhost` and leaves everything else as it came.
//!
//! HPACK is stateful, but this needs no HPACK table of its own: only
//! literal `:authority` fields are rewritten, each in the same
//! representation, so h2's dynamic table holds the same entries in the same
//! order as the client's, each no larger (`localhost` is short). h2 thus
//! evicts no sooner than the client does, and every index the client sends
//! names the same entry in both tables. Nothing is Huffman-decoded: a field
//! whose name is a Huffman-coded literal is left alone (no client seen here
//! sends one). Pure: bytes in, bytes out.

/// What every literal `:authority` becomes.
const AUTHORITY: &[u8] = b"localhost";
/// The client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer accepts (SETTINGS_MAX_FRAME_SIZE's
/// initial value); rewritten header blocks are cut to it.
const MAX_FRAME: usize = 16_384;
/// Header blocks larger than this are refused (the connection ends): h2
/// would refuse them anyway, and this bounds what one client makes us hold.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The field's name.
const NAME: &[u8] = b":authority";
/// The static table index of `:authority` (RFC 7541 Appendix A).
const AUTHORITY_INDEX: u64 = 1;

/// The state of one connection's client-to-server byte stream.
#[derive(Debug)]
pub struct AuthorityRewriter {
    /// Bytes not yet complete enough to act on.
    pending: Vec<u8>,
    /// Preface bytes still to pass.
    preface: usize,
    /// Payload bytes of a frame that passes unchanged, still to come.
    passing: usize,
    /// A header block being gathered: HEADERS flags, stream, priority
    /// fields, the block so far.
    block: Option<HeaderBlock>,
}

#[derive(Debug)]
struct HeaderBlock {
    flags: u8,
    stream: [u8; 4],
    priority: Vec<u8>,
    fragment: Vec<u8>,
}

/// A client sent more header block than [`MAX_HEADER_BLOCK`].
#[derive(Debug, PartialEq, Eq)]
pub struct HeaderBlockTooLarge;

impl Default for AuthorityRewriter {
    fn default() -> Self {
        AuthorityRewriter {
            pending: Vec::new(),
            preface: PREFACE_LEN,
            passing: 0,
            block: None,
        }
    }
}

impl AuthorityRewriter {
    /// Takes the next bytes the client sent; appends to `out` what h2 may
    /// read now.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), HeaderBlockTooLarge> {
        while !input.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.preface -= n;
                input = &input[n..];
                continue;
            }
            if self.passing > 0 {
                let n = self.passing.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.passing -= n;
                input = &input[n..];
                continue;
            }
            // A frame header, then (for header blocks) the whole payload.
            let need = if self.pending.len() < FRAME_HEADER_LEN {
                FRAME_HEADER_LEN
            } else {
                FRAME_HEADER_LEN + frame_len(&self.pending)
            };
            let n = (need - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..n]);
            input = &input[n..];
            if self.pending.len() == FRAME_HEADER_LEN {
                let kind = self.pending[3];
                if kind != HEADERS && kind != CONTINUATION {
                    out.append(&mut self.pending);
                    self.passing = frame_len(&out[out.len() - FRAME_HEADER_LEN..]);
                    continue;
                }
                if self.gathered() + frame_len(&self.pending) > MAX_HEADER_BLOCK {
                    return Err(HeaderBlockTooLarge);
                }
            }
            if self.pending.len() >= FRAME_HEADER_LEN
                && self.pending.len() == FRAME_HEADER_LEN + frame_len(&self.pending)
            {
                let frame = std::mem::take(&mut self.pending);
                self.header_frame(&frame, out);
            }
        }
        Ok(())
    }

    fn gathered(&self) -> usize {
        self.block.as_ref().map_or(0, |b| b.fragment.len())
    }

    /// A whole HEADERS or CONTINUATION frame.
    fn header_frame(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream: [u8; 4] = frame[5..9].try_into().unwrap_or_default();
        let payload = &frame[FRAME_HEADER_LEN..];
        match (kind, self.block.as_mut()) {
            (HEADERS, None) => {
                let Some((priority, fragment)) = split_headers(flags, payload) else {
                    // Malformed padding or priority: h2 will say so.
                    out.extend_from_slice(frame);
                    return;
                };
                self.block = Some(HeaderBlock {
                    flags,
                    stream,
                    priority: priority.to_vec(),
                    fragment: fragment.to_vec(),
                });
            }
            (CONTINUATION, Some(block)) if block.stream == stream => {
                block.fragment.extend_from_slice(payload);
            }
            _ => {
                // Out of order: pass it on unchanged and let h2 refuse it.
                if let Some(block) = self.block.take() {
                    emit(block, out, false);
                }
                out.extend_from_slice(frame);
                return;
            }
        }
        if flags & END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            emit(block, out, true);
        }
    }
}

fn frame_len(header: &[u8]) -> usize {
    (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2])
}

/// A HEADERS payload -> (priority fields, header block fragment), without
/// padding.
fn split_headers(flags: u8, payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut body = payload;
    if flags & PADDED != 0 {
        let (&pad, rest) = body.split_first()?;
        body = rest.get(..rest.len().checked_sub(usize::from(pad))?)?;
    }
    let priority_len = if flags & PRIORITY != 0 { 5 } else { 0 };
    (body.len() >= priority_len).then(|| body.split_at(priority_len))
}

/// Writes the block as HEADERS (+ CONTINUATION) frames of at most
/// [`MAX_FRAME`] bytes, rewritten when `rewrite` (a block cut short by a
/// protocol error is passed as it came).
fn emit(block: HeaderBlock, out: &mut Vec<u8>, rewrite: bool) {
    let fragment = if rewrite {
        rewrite_block(&block.fragment).unwrap_or(block.fragment)
    } else {
        block.fragment
    };
    let mut payload = block.priority;
    payload.extend_from_slice(&fragment);
    let flags = block.flags & !(PADDED | END_HEADERS);
    let mut chunks = payload.chunks(MAX_FRAME).peekable();
    let mut kind = HEADERS;
    let mut first_flags = flags;
    if chunks.peek().is_none() {
        frame(
            out,
            HEADERS,
            flags | if rewrite { END_HEADERS } else { 0 },
            &block.stream,
            &[],
        );
        return;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let end = if last && rewrite { END_HEADERS } else { 0 };
        frame(out, kind, first_flags | end, &block.stream, chunk);
        kind = CONTINUATION;
        first_flags = 0;
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: &[u8; 4], payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(stream);
    out.extend_from_slice(payload);
}

/// The header block with every literal `:authority` value (its name given
/// as static index 1, as Go and Java clients send it, or as a plain string,
/// as grpcio does; a Huffman-coded name is left alone) replaced by
/// `localhost`; `None` when the block does not
/// parse as HPACK (h2 will refuse it as it is).
fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        if first & 0x80 != 0 {
            // Indexed field.
            let (_, next) = integer(block, at, 7)?;
            out.extend_from_slice(&block[at..next]);
            at = next;
        } else if first & 0xE0 == 0x20 {
            // Dynamic table size update.
            let (_, next) = integer(block, at, 5)?;
            out.extend_from_slice(&block[at..next]);
            at = next;
        } else {
            // A literal: with incremental indexing (01), without (0000) or
            // never indexed (0001).
            let prefix = if first & 0x40 != 0 { 6 } else { 4 };
            let (index, name_at) = integer(block, at, prefix)?;
            let mut next = name_at;
            let mut named_authority = index == AUTHORITY_INDEX;
            if index == 0 {
                next = string_end(block, name_at)?;
                // A plain (not Huffman-coded) name, as grpcio sends it.
                named_authority = block[name_at..next] == [&[NAME.len() as u8][..], NAME].concat();
            }
            let value_end = string_end(block, next)?;
            out.extend_from_slice(&block[at..next]);
            if named_authority {
                out.push(AUTHORITY.len() as u8);
                out.extend_from_slice(AUTHORITY);
            } else {
                out.extend_from_slice(&block[next..value_end]);
            }
            at = value_end;
        }
    }
    Some(out)
}

/// An HPACK integer with an `n`-bit prefix at `at` -> (value, next offset).
fn integer(block: &[u8], at: usize, n: u32) -> Option<(u64, usize)> {
    let max = (1u64 << n) - 1;
    let mut value = u64::from(*block.get(at)?) & max;
    let mut next = at + 1;
    if value < max {
        return Some((value, next));
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(next)?;
        next += 1;
        // Longer than any length a header block may hold: malformed.
        if shift > 28 {
            return None;
        }
        value += u64::from(b & 0x7F) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Some((value, next));
        }
    }
}

/// The end of the HPACK string literal starting at `at`.
fn string_end(block: &[u8], at: usize) -> Option<usize> {
    let (len, start) = integer(block, at, 7)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= block.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut r = AuthorityRewriter::default();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut out).unwrap();
        }
        out
    }

    fn headers_frame(flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame(&mut out, HEADERS, flags, &stream.to_be_bytes(), payload);
        out
    }

    /// `:method POST` (indexed 3), `:authority` literal with incremental
    /// indexing and a plain value, `:path` literal without indexing.
    fn block_with_authority(authority: &[u8], first: u8) -> Vec<u8> {
        let mut b = vec![0x83, first, authority.len() as u8];
        b.extend_from_slice(authority);
        b.extend_from_slice(&[0x04, 0x03]);
        b.extend_from_slice(b"/x/");
        b
    }

    fn expected_block(first: u8) -> Vec<u8> {
        block_with_authority(b"localhost", first)
    }

    #[test]
    fn the_authority_of_a_literal_field_becomes_localhost() {
        for first in [0x41, 0x01, 0x11] {
            let block = block_with_authority(b"%2Ftmp%2Fcsi.sock", first);
            let input = [PREFACE.to_vec(), headers_frame(END_HEADERS, 1, &block)].concat();
            let want = [
                PREFACE.to_vec(),
                headers_frame(END_HEADERS, 1, &expected_block(first)),
            ]
            .concat();
            assert_eq!(run(&[&input]), want, "representation {first:#x}");
        }
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_output() {
        let block = block_with_authority(b"/var/lib/kubelet/plugins/x/csi.sock", 0x41);
        let data = [0u8, 0, 3, 0x0, 0x1, 0, 0, 0, 1, b'a', b'b', b'c'];
        let input = [
            PREFACE.to_vec(),
            headers_frame(END_HEADERS, 1, &block),
            data.to_vec(),
        ]
        .concat();
        let whole = run(&[&input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), whole);
        assert!(whole.ends_with(&data), "DATA frames pass unchanged");
    }

    #[test]
    fn other_frames_and_indexed_fields_pass_unchanged() {
        // SETTINGS, then a block of indexed fields only, then a PING.
        let settings = [0u8, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        let block = [0x83u8, 0x86, 0xBE];
        let ping = [0u8, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let input = [
            PREFACE.to_vec(),
            settings.to_vec(),
            headers_frame(END_HEADERS | 0x1, 3, &block),
            ping.to_vec(),
        ]
        .concat();
        assert_eq!(run(&[&input]), input);
    }

    #[test]
    fn a_plain_literal_name_is_recognised_and_others_left_alone() {
        // As grpcio sends it: literal name ":authority", literal value.
        let named = |name: &[u8], value: &[u8]| {
            let mut b = vec![0x40, name.len() as u8];
            b.extend_from_slice(name);
            b.push(value.len() as u8);
            b.extend_from_slice(value);
            b
        };
        let input = [
            PREFACE.to_vec(),
            headers_frame(END_HEADERS, 1, &named(b":authority", b"tmp%2Fx%2Fcsi.sock")),
        ]
        .concat();
        let want = [
            PREFACE.to_vec(),
            headers_frame(END_HEADERS, 1, &named(b":authority", b"localhost")),
        ]
        .concat();
        assert_eq!(run(&[&input]), want);
        // Another name, and a Huffman-coded one (H bit set), are not touched.
        for block in [named(b"x-authority", b"/a/b/"), {
            let mut b = named(b":authority", b"/a/b/");
            b[1] |= 0x80;
            b
        }] {
            let input = [PREFACE.to_vec(), headers_frame(END_HEADERS, 1, &block)].concat();
            assert_eq!(run(&[&input]), input);
        }
    }

    #[test]
    fn padding_is_dropped_priority_kept_and_continuations_joined() {
        let block = block_with_authority(b"unix:/tmp/s", 0x41);
        let (a, b) = block.split_at(4);
        // PADDED | PRIORITY HEADERS without END_HEADERS, then CONTINUATION.
        let mut payload = vec![2u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0]);
        let mut input = [
            PREFACE.to_vec(),
            headers_frame(PADDED | PRIORITY | 0x1, 5, &payload),
        ]
        .concat();
        frame(
            &mut input,
            CONTINUATION,
            END_HEADERS,
            &5u32.to_be_bytes(),
            b,
        );
        let mut want_payload = vec![0, 0, 0, 0, 16];
        want_payload.extend_from_slice(&expected_block(0x41));
        let want = [
            PREFACE.to_vec(),
            headers_frame(PRIORITY | 0x1 | END_HEADERS, 5, &want_payload),
        ]
        .concat();
        assert_eq!(run(&[&input]), want);
    }

    #[test]
    fn a_long_rewritten_block_is_cut_into_frames_h2_accepts() {
        // One :authority plus a large literal header.
        let mut block = block_with_authority(b"a", 0x41);
        let value = vec![b'v'; 20_000];
        block.push(0x00);
        block.push(0x01);
        block.push(b'k');
        block.push(0x7F);
        let mut rest = value.len() - 127;
        while rest >= 128 {
            block.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        block.push(rest as u8);
        block.extend_from_slice(&value);
        let mut input = PREFACE.to_vec();
        let (a, b) = block.split_at(MAX_FRAME);
        input.extend(headers_frame(0, 1, a));
        frame(
            &mut input,
            CONTINUATION,
            END_HEADERS,
            &1u32.to_be_bytes(),
            b,
        );
        let out = run(&[&input]);
        let first = &out[PREFACE_LEN..];
        assert_eq!(frame_len(first), MAX_FRAME);
        assert_eq!(first[3], HEADERS);
        assert_eq!(first[4] & END_HEADERS, 0);
        let second = &first[FRAME_HEADER_LEN + MAX_FRAME..];
        assert_eq!(second[3], CONTINUATION);
        assert_eq!(second[4], END_HEADERS);
        let joined = [
            &first[FRAME_HEADER_LEN..FRAME_HEADER_LEN + MAX_FRAME],
            &second[FRAME_HEADER_LEN..],
        ]
        .concat();
        assert_eq!(
            &joined[..expected_block(0x41).len() - 6],
            &expected_block(0x41)[..expected_block(0x41).len() - 6]
        );
        assert!(joined.ends_with(&value));
    }

    #[test]
    fn a_malformed_block_passes_as_it_came() {
        // A literal whose value length runs past the block.
        let block = [0x41u8, 0x7F, 0x05, b'a'];
        let input = [PREFACE.to_vec(), headers_frame(END_HEADERS, 1, &block)].concat();
        assert_eq!(run(&[&input]), input);
    }

    #[test]
    fn header_blocks_are_bounded() {
        let mut r = AuthorityRewriter::default();
        let mut out = Vec::new();
        r.feed(PREFACE, &mut out).unwrap();
        let chunk = vec![0u8; MAX_FRAME];
        let mut refused = false;
        let mut first = true;
        for _ in 0..(MAX_HEADER_BLOCK / MAX_FRAME + 2) {
            let mut f = Vec::new();
            let kind = if first { HEADERS } else { CONTINUATION };
            frame(&mut f, kind, 0, &1u32.to_be_bytes(), &chunk);
            first = false;
            if r.feed(&f, &mut out).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
    }

    #[test]
    fn integers_decode_as_rfc_7541_says() {
        // C.1.2: 1337 with a 5-bit prefix.
        assert_eq!(integer(&[0x1F, 0x9A, 0x0A], 0, 5), Some((1337, 3)));
        assert_eq!(integer(&[0x0A], 0, 5), Some((10, 1)));
        assert_eq!(integer(&[0x1F, 0x9A], 0, 5), None);
        assert_eq!(
            integer(&[0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 0, 5),
            None
        );
    }
}

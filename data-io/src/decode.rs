//! Streamed decompression of a source (gzip, zstd): the compressed bytes are pushed in as they
//! are read, in chunks of any size, and come out in bounded steps, so a leaf's memory is a few
//! buffers whatever the ratio; a stream that gives more than its decompression bound (a bomb),
//! a corrupt one and a truncated one stop with the compressed bytes where it happened named.
//!
//! Decoding is synchronous CPU work: a leaf runs [`Decoder::decode_into`] on the blocking pool.

use std::sync::Arc;

use batch_core::frames::{FrameError, FrameIndex};
use batch_core::source::{Compression, decompressed_bound};
use flate2::{Crc, Decompress, FlushDecompress, Status};
use zstd::stream::raw::{DParameter, Decoder as ZstdDecoder, Operation as _};

/// Compressed bytes given to the decoder per step: a corrupt stream's error names a range of
/// at most this many bytes.
const STEP_IN: usize = 64 * 1024;
/// Decompressed bytes per step: what one step adds to memory, whatever the ratio.
const STEP_OUT: usize = 256 * 1024;
/// The largest window a zstd frame may ask for: 2^27 = 128 MiB, zstd's own default limit (a
/// frame made with `--long=31` asks for 2 GiB of memory, and is refused).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Longest gzip member header (its optional extra field, name and comment).
const MAX_GZIP_HEADER: usize = 256 * 1024;

/// Why a compressed stream stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "the {compression} stream is corrupt in compressed bytes {first}..={last} (after \
         {produced} decompressed bytes): {detail}"
    )]
    Corrupt {
        compression: Compression,
        first: u64,
        last: u64,
        produced: u64,
        detail: String,
    },
    #[error(
        "the {compression} stream ends in the middle of a {unit}, after {consumed} compressed \
         bytes ({produced} decompressed): the object is truncated"
    )]
    Truncated {
        compression: Compression,
        unit: &'static str,
        consumed: u64,
        produced: u64,
    },
    #[error(
        "the {compression} stream decompresses to more than {max_ratio} times its compressed \
         size ({produced} bytes from its first {consumed}): a decompression bomb? If the data \
         is this repetitive, raise --max-decompression-ratio"
    )]
    Bomb {
        compression: Compression,
        max_ratio: u32,
        consumed: u64,
        produced: u64,
    },
    #[error("the {compression} stream {error}")]
    Frames {
        compression: Compression,
        #[source]
        error: FrameError,
    },
}

/// A stream being decompressed.
pub struct Decoder {
    compression: Compression,
    state: State,
    max_ratio: u32,
    /// Compressed bytes consumed so far.
    consumed: u64,
    /// Decompressed bytes produced so far.
    produced: u64,
    /// A stream entered at a frame of its index: every frame end is checked against it.
    framed: Option<Framed>,
}

/// Where a decoder entered at a frame is in its index.
struct Framed {
    index: Arc<FrameIndex>,
    /// The frame where decoding started.
    from: usize,
    /// The frame being decoded.
    frame: usize,
}

enum State {
    Gzip(Gzip),
    Zstd {
        decoder: Box<ZstdDecoder<'static>>,
        /// Inside a frame (its end not yet reached and flushed).
        in_frame: bool,
    },
}

/// Where a gzip stream (RFC 1952: members, one after the other) is.
enum Gzip {
    /// Before a member (the stream's first or the next one), or in its header: its bytes so
    /// far.
    Header(Vec<u8>),
    /// In a member's deflate data.
    Body(Box<Decompress>, Crc),
    /// In a member's trailer (CRC-32 and size): its bytes so far.
    Trailer(Crc, Vec<u8>),
}

/// One step's progress: bytes of input consumed, of output produced, and whether a member or a
/// frame ended with it.
#[derive(Default)]
struct Step {
    consumed: usize,
    produced: usize,
    ended: bool,
}

impl Decoder {
    /// A decoder of `compression` that stops past `max_ratio` times the compressed bytes read
    /// ([`decompressed_bound`]).
    pub fn new(compression: Compression, max_ratio: u32) -> Result<Self, DecodeError> {
        let state = match compression {
            Compression::Gzip => State::Gzip(Gzip::Header(Vec::new())),
            Compression::Zstd => {
                let setup = || -> std::io::Result<ZstdDecoder<'static>> {
                    let mut decoder = ZstdDecoder::new()?;
                    decoder.set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))?;
                    Ok(decoder)
                };
                let decoder = setup().map_err(|e| DecodeError::Corrupt {
                    compression,
                    first: 1,
                    last: 1,
                    produced: 0,
                    detail: format!("cannot set up the decoder: {e}"),
                })?;
                State::Zstd {
                    decoder: Box::new(decoder),
                    in_frame: false,
                }
            }
        };
        Ok(Self {
            compression,
            state,
            max_ratio,
            consumed: 0,
            produced: 0,
            framed: None,
        })
    }

    /// A decoder of a framed stream entered at the start of frame `from` of `index`: it checks
    /// that every frame it decodes ends where the index says, and never goes past its end.
    pub fn framed(
        compression: Compression,
        max_ratio: u32,
        index: Arc<FrameIndex>,
        from: usize,
    ) -> Result<Self, DecodeError> {
        let mut decoder = Self::new(compression, max_ratio)?;
        decoder.framed = Some(Framed {
            index,
            from,
            frame: from,
        });
        Ok(decoder)
    }

    /// Compressed bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Decompressed bytes produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Decompresses from `input` (the bytes after those consumed before), appending to `out`,
    /// until `input` is consumed and the decoder holds nothing more, or `out` holds at least
    /// `max_out` bytes. Returns how many bytes of `input` it consumed: the caller gives the
    /// rest again, followed by the next bytes read.
    pub fn decode_into(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<usize, DecodeError> {
        let mut at = 0;
        while out.len() < max_out {
            let slice = &input[at..input.len().min(at + STEP_IN)];
            let start = out.len();
            out.resize(start + STEP_OUT, 0);
            let step = self.step(slice, &mut out[start..]);
            let step = match step {
                Ok(step) => step,
                Err(detail) => {
                    out.truncate(start);
                    return Err(self.corrupt(slice.len(), detail));
                }
            };
            out.truncate(start + step.produced);
            at += step.consumed;
            self.consumed += step.consumed as u64;
            self.produced += step.produced as u64;
            let progress = step.consumed > 0 || step.produced > 0;
            if let Some(framed) = self.framed.as_mut().filter(|_| progress) {
                let (stored, decompressed) = (self.consumed, self.produced);
                let checked = match step.ended {
                    true => framed
                        .index
                        .check_end(framed.from, framed.frame, stored, decompressed)
                        .map(|next| framed.frame = next),
                    false => {
                        framed
                            .index
                            .check_within(framed.from, framed.frame, stored, decompressed)
                    }
                };
                checked.map_err(|error| DecodeError::Frames {
                    compression: self.compression,
                    error,
                })?;
            }
            if self.produced > decompressed_bound(self.max_ratio, self.consumed) {
                return Err(DecodeError::Bomb {
                    compression: self.compression,
                    max_ratio: self.max_ratio,
                    consumed: self.consumed,
                    produced: self.produced,
                });
            }
            if step.consumed == 0 && step.produced == 0 {
                if slice.is_empty() {
                    break;
                }
                return Err(self.corrupt(slice.len(), "the decoder makes no progress".into()));
            }
            // A step that did not fill its output left nothing in the decoder.
            if at == input.len() && step.produced < STEP_OUT {
                break;
            }
        }
        Ok(at)
    }

    /// At the end of the object: fails when the stream stops inside a member or a frame.
    pub fn finish(&self) -> Result<(), DecodeError> {
        let unit = match &self.state {
            State::Gzip(Gzip::Header(bytes)) if bytes.is_empty() && self.consumed > 0 => None,
            State::Gzip(_) => Some("member"),
            State::Zstd {
                in_frame: false, ..
            } if self.consumed > 0 => None,
            State::Zstd { .. } => Some("frame"),
        };
        match unit {
            None => Ok(()),
            Some(unit) => Err(DecodeError::Truncated {
                compression: self.compression,
                unit,
                consumed: self.consumed,
                produced: self.produced,
            }),
        }
    }

    fn corrupt(&self, len: usize, detail: String) -> DecodeError {
        DecodeError::Corrupt {
            compression: self.compression,
            first: self.consumed + 1,
            last: self.consumed + (len as u64).max(1),
            produced: self.produced,
            detail: batch_core::text::bounded(&detail, 200),
        }
    }

    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, String> {
        match &mut self.state {
            State::Gzip(gzip) => gzip.step(input, out),
            State::Zstd { decoder, in_frame } => {
                let status = decoder
                    .run_on_buffers(input, out)
                    .map_err(|e| e.to_string())?;
                // 0: a frame ended and is flushed; the next bytes, if any, start another.
                let progress = status.bytes_read > 0 || status.bytes_written > 0;
                if progress {
                    *in_frame = status.remaining != 0;
                }
                Ok(Step {
                    consumed: status.bytes_read,
                    produced: status.bytes_written,
                    ended: progress && status.remaining == 0,
                })
            }
        }
    }
}

impl Gzip {
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, String> {
        match self {
            Gzip::Header(bytes) => {
                if input.is_empty() {
                    return Ok(Step::default());
                }
                let before = bytes.len();
                let take = input.len().min(MAX_GZIP_HEADER + 1 - before);
                bytes.extend_from_slice(&input[..take]);
                match gzip_header_len(bytes)? {
                    Some(len) => {
                        *self = Gzip::Body(Box::new(Decompress::new(false)), Crc::new());
                        Ok(Step {
                            consumed: len - before,
                            ..Step::default()
                        })
                    }
                    None if bytes.len() > MAX_GZIP_HEADER => Err(format!(
                        "a member's header is longer than {MAX_GZIP_HEADER} bytes"
                    )),
                    None => Ok(Step {
                        consumed: take,
                        ..Step::default()
                    }),
                }
            }
            Gzip::Body(inflate, crc) => {
                let (read, written) = (inflate.total_in(), inflate.total_out());
                let status = inflate
                    .decompress(input, out, FlushDecompress::None)
                    .map_err(|e| e.to_string())?;
                let consumed = (inflate.total_in() - read) as usize;
                let produced = (inflate.total_out() - written) as usize;
                crc.update(&out[..produced]);
                if status == Status::StreamEnd {
                    let crc = std::mem::replace(crc, Crc::new());
                    *self = Gzip::Trailer(crc, Vec::with_capacity(8));
                }
                Ok(Step {
                    consumed,
                    produced,
                    ended: false,
                })
            }
            Gzip::Trailer(crc, bytes) => {
                let take = input.len().min(8 - bytes.len());
                bytes.extend_from_slice(&input[..take]);
                if bytes.len() == 8 {
                    let word = |at: usize| {
                        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                    };
                    if word(0) != crc.sum() {
                        return Err(format!(
                            "a member's CRC-32 is {:08x}, its data's {:08x}",
                            word(0),
                            crc.sum()
                        ));
                    }
                    if word(4) != crc.amount() {
                        return Err(format!(
                            "a member's size is {} (mod 2^32), its data's {}",
                            word(4),
                            crc.amount()
                        ));
                    }
                    *self = Gzip::Header(Vec::new());
                }
                // The trailer's last bytes may be the stream's last: progress all the same.
                Ok(Step {
                    consumed: take,
                    produced: 0,
                    ended: matches!(self, Gzip::Header(_)),
                })
            }
        }
    }
}

/// The length of the gzip member header at the start of `bytes`, or `None` if more bytes are
/// needed to know it (RFC 1952, 2.3).
fn gzip_header_len(bytes: &[u8]) -> Result<Option<usize>, String> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    let magic = [0x1f, 0x8b, 0x08];
    let known = bytes.len().min(3);
    if bytes[..known] != magic[..known] {
        return Err(format!(
            "not a gzip member (it starts {})",
            bytes
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    if bytes.len() < 10 {
        return Ok(None);
    }
    let flags = bytes[3];
    if flags & 0xe0 != 0 {
        return Err(format!(
            "a member's header has reserved flags set ({flags:#04x})"
        ));
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let Some(len) = bytes.get(at..at + 2) else {
            return Ok(None);
        };
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match bytes
                .get(at..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
            {
                Some(end) => at += end + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & FHCRC != 0 {
        let Some(stored) = bytes.get(at..at + 2) else {
            return Ok(None);
        };
        let mut crc = Crc::new();
        crc.update(&bytes[..at]);
        if u16::from_le_bytes([stored[0], stored[1]]) != (crc.sum() & 0xffff) as u16 {
            return Err("a member's header CRC does not match its header".into());
        }
        at += 2;
    }
    Ok((bytes.len() >= at).then_some(at))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("written");
        encoder.finish().expect("finished")
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).expect("compressed")
    }

    /// Decodes `compressed` pushed `chunk` bytes at a time, taking at most `max_out` more
    /// bytes per call (as a leaf does: what is not consumed is given again).
    fn decode(
        compression: Compression,
        compressed: &[u8],
        chunk: usize,
        max_out: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        run(Decoder::new(compression, 250)?, compressed, chunk, max_out)
    }

    /// [`decode`] with a given decoder.
    fn run(
        mut decoder: Decoder,
        compressed: &[u8],
        chunk: usize,
        max_out: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut chunks = compressed.chunks(chunk);
        loop {
            let next = chunks.next();
            if let Some(bytes) = next {
                pending.extend_from_slice(bytes);
            }
            loop {
                let mut step = Vec::new();
                let used = decoder.decode_into(&pending, &mut step, max_out)?;
                pending.drain(..used);
                let done = step.is_empty() && used == 0;
                out.extend_from_slice(&step);
                if done {
                    break;
                }
            }
            if next.is_none() {
                decoder.finish()?;
                assert_eq!(decoder.consumed(), compressed.len() as u64);
                assert_eq!(decoder.produced(), out.len() as u64);
                return Ok(out);
            }
        }
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("{{\"id\":{i},\"word\":\"w{}\"}}\n", i * 7919 % 1000))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn every_cut_of_the_input_gives_the_same_bytes() {
        let data = text(2_000);
        for (compression, compressed) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Zstd, zstd(&data)),
        ] {
            for chunk in [1, 2, 3, 7, 64, 1000, compressed.len()] {
                for max_out in [1, 100, 1 << 20] {
                    let out = decode(compression, &compressed, chunk, max_out)
                        .unwrap_or_else(|e| panic!("{compression} {chunk} {max_out}: {e}"));
                    assert!(out == data, "{compression} {chunk} {max_out}");
                }
            }
        }
    }

    #[test]
    fn members_and_frames_follow_one_another_and_headers_may_carry_every_field() {
        let (a, b) = (text(300), text(10));
        let mut with_fields = Vec::new();
        let mut encoder = flate2::GzBuilder::new()
            .filename("b.jsonl")
            .comment("a comment")
            .extra(vec![1, 2, 3, 4])
            .write(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&b).expect("written");
        with_fields.extend(encoder.finish().expect("finished"));
        // The header's CRC (FHCRC), which flate2 does not write: set the flag, append it.
        let header_len = gzip_header_len(&with_fields)
            .expect("valid")
            .expect("whole");
        let mut flagged = with_fields[..header_len].to_vec();
        flagged[3] |= 0x02;
        let mut crc = Crc::new();
        crc.update(&flagged);
        flagged.extend_from_slice(&((crc.sum() & 0xffff) as u16).to_le_bytes());
        flagged.extend_from_slice(&with_fields[header_len..]);
        let gz = [gzip(&a), with_fields, flagged, gzip(b"")].concat();
        let want = [a.clone(), b.clone(), b.clone()].concat();
        for chunk in [1, 5, gz.len()] {
            assert!(decode(Compression::Gzip, &gz, chunk, 1 << 20).expect("decoded") == want);
        }
        // zstd: two frames with a skippable frame (a seek table's kind) between them.
        let skippable = [
            &0x184D_2A5E_u32.to_le_bytes()[..],
            &3_u32.to_le_bytes(),
            b"abc",
        ]
        .concat();
        let zst = [zstd(&a), skippable, zstd(&b)].concat();
        for chunk in [1, 5, zst.len()] {
            let out = decode(Compression::Zstd, &zst, chunk, 1 << 20).expect("decoded");
            assert!(out == [a.clone(), b.clone()].concat());
        }
    }

    #[test]
    fn a_flipped_byte_never_passes_silently_and_its_error_names_where() {
        let data = text(200);
        for (compression, compressed) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Zstd, zstd_with_checksum(&data)),
        ] {
            for at in 0..compressed.len() {
                let mut bad = compressed.clone();
                bad[at] ^= 0x55;
                match decode(compression, &bad, 97, 1 << 20) {
                    // A byte the data does not depend on (a gzip header's time): the data
                    // is whole.
                    Ok(out) => assert!(out == data, "{compression}: byte {at} flipped passed"),
                    Err(DecodeError::Corrupt { first, last, .. }) => {
                        assert!(first <= last, "{compression} {at}");
                    }
                    Err(DecodeError::Truncated { .. }) => {}
                    Err(e) => panic!("{compression} {at}: {e}"),
                }
            }
        }
    }

    fn zstd_with_checksum(data: &[u8]) -> Vec<u8> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        encoder.include_checksum(true).expect("checksum");
        encoder.write_all(data).expect("written");
        encoder.finish().expect("finished")
    }

    #[test]
    fn a_stream_cut_anywhere_is_truncated_or_corrupt_never_whole() {
        let data = text(100);
        for (compression, compressed) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Zstd, zstd(&data)),
        ] {
            for len in 1..compressed.len() {
                let err = decode(compression, &compressed[..len], 13, 1 << 20)
                    .expect_err("a cut stream fails");
                if let DecodeError::Truncated { consumed, .. } = err {
                    assert_eq!(consumed, len as u64, "{compression}");
                }
            }
        }
        let err = decode(Compression::Gzip, &gzip(&data)[..30], 1000, 1 << 20)
            .expect_err("cut")
            .to_string();
        assert!(
            err.starts_with("the gzip stream ends in the middle of a member, after 30 compressed"),
            "{err}"
        );
    }

    #[test]
    fn a_bomb_stops_at_the_bound_with_a_few_buffers_in_memory() {
        // 1 GiB of line ends: ~1 MB of gzip, ~40 KB of zstd.
        let gib = 1 << 30;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut zst = zstd::stream::write::Encoder::new(Vec::new(), 19).expect("encoder");
        let block = vec![b'\n'; 1 << 20];
        for _ in 0..gib / block.len() {
            gz.write_all(&block).expect("written");
            zst.write_all(&block).expect("written");
        }
        for (compression, compressed) in [
            (Compression::Gzip, gz.finish().expect("finished")),
            (Compression::Zstd, zst.finish().expect("finished")),
        ] {
            let mut decoder = Decoder::new(compression, 250).expect("decoder");
            let mut out = Vec::new();
            let mut input = &compressed[..];
            let err = loop {
                out.clear();
                match decoder.decode_into(input, &mut out, 4 << 20) {
                    Ok(used) => input = &input[used..],
                    Err(e) => break e,
                }
                // Never more than the caller's step and one decoder step at once.
                assert!(out.len() <= (4 << 20) + STEP_OUT);
            };
            let DecodeError::Bomb { produced, .. } = err else {
                panic!("{compression}: {err}");
            };
            let bound = decompressed_bound(250, decoder.consumed());
            assert!(produced > bound && produced <= bound + STEP_OUT as u64);
            assert!(
                err.to_string().contains("raise --max-decompression-ratio"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_frame_asking_for_a_huge_window_is_refused() {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        encoder
            .set_parameter(zstd::stream::raw::CParameter::WindowLog(30))
            .expect("window");
        encoder
            .set_parameter(zstd::stream::raw::CParameter::EnableLongDistanceMatching(
                true,
            ))
            .expect("long");
        encoder.set_pledged_src_size(None).expect("unknown size");
        encoder.write_all(&text(100)).expect("written");
        let compressed = encoder.finish().expect("finished");
        let err = decode(Compression::Zstd, &compressed, 1 << 20, 1 << 20).expect_err("refused");
        assert!(
            err.to_string().contains("Frame requires too much memory"),
            "{err}"
        );
    }

    #[test]
    fn a_stream_of_another_kind_is_named_as_such() {
        let err = decode(Compression::Gzip, b"{\"id\":1}\n", 100, 100).expect_err("not gzip");
        assert_eq!(
            err.to_string(),
            "the gzip stream is corrupt in compressed bytes 1..=9 (after 0 decompressed \
             bytes): not a gzip member (it starts 7b 22 69 64)"
        );
        let err = decode(Compression::Zstd, b"{\"id\":1}\n", 100, 100).expect_err("not zstd");
        assert!(
            err.to_string()
                .starts_with("the zstd stream is corrupt in compressed bytes 1..=9")
        );
        // Bytes after a whole member that are not another: refused, not ignored.
        let trailing = [gzip(b"a\n"), vec![0; 10]].concat();
        assert!(decode(Compression::Gzip, &trailing, 100, 100).is_err());
    }

    #[test]
    fn a_framed_stream_is_entered_at_any_frame_and_checked_against_its_index() {
        let data = text(2000);
        let stream = crate::frames::tests::seekable(&data, 7000, true);
        let index = Arc::new(
            crate::frames::tests::index_of(&stream)
                .expect("parsed")
                .expect("seekable"),
        );
        assert!(index.frames() > 5);
        for from in 0..index.frames() {
            let (start, end) = (index.start(from), index.stored_end());
            let compressed = &stream[start.stored as usize..end as usize];
            for chunk in [100, 1 << 20] {
                let decoder =
                    Decoder::framed(Compression::Zstd, 250, index.clone(), from).expect("decoder");
                let out = run(decoder, compressed, chunk, 5000).expect("decoded");
                assert!(
                    out == data[start.decompressed as usize..],
                    "from frame {from}"
                );
            }
        }
    }

    #[test]
    fn an_index_that_lies_about_the_frames_fails_the_stream() {
        let data = text(2000);
        let stream = crate::frames::tests::seekable(&data, 7000, false);
        let index = crate::frames::tests::index_of(&stream)
            .expect("parsed")
            .expect("seekable");
        let sizes: Vec<(u64, u64)> = (0..index.frames())
            .map(|k| {
                let (a, b) = (index.start(k), index.frame_end(k));
                (b.stored - a.stored, b.decompressed - a.decompressed)
            })
            .collect();
        let end = index.stored_end();
        let mut shifted = sizes.clone();
        shifted[1].1 -= 1;
        shifted[2].1 += 1;
        let mut merged = sizes.clone();
        merged[1] = (sizes[1].0 + sizes[2].0, sizes[1].1 + sizes[2].1);
        merged.remove(2);
        let mut cut = sizes.clone();
        cut[1] = (sizes[1].0 - 5, sizes[1].1 / 2);
        cut.insert(2, (5, sizes[1].1 - sizes[1].1 / 2));
        for (what, forged) in [("shifted", shifted), ("merged", merged), ("cut", cut)] {
            let forged = FrameIndex::from_sizes(forged, end, u64::MAX).expect("index");
            let decoder =
                Decoder::framed(Compression::Zstd, 250, Arc::new(forged), 0).expect("decoder");
            let err = run(decoder, &stream[..end as usize], 4096, 1 << 20).expect_err(what);
            assert!(matches!(err, DecodeError::Frames { .. }), "{what}: {err}");
            assert!(
                err.to_string().contains("does not match the index"),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn a_gzip_stream_is_entered_at_any_member_of_its_index() {
        let data = text(2000);
        let (gz, gzi) = crate::frames::tests::gzip_indexed(&data, 7000);
        let index = crate::frames::tests::gzi_index(&gzi, gz.len() as u64);
        for from in 0..index.frames() {
            let start = index.start(from);
            let decoder = Decoder::framed(Compression::Gzip, 250, Arc::new(index.clone()), from)
                .expect("decoder");
            let out = run(decoder, &gz[start.stored as usize..], 333, 5000).expect("decoded");
            assert!(
                out == data[start.decompressed as usize..],
                "from member {from}"
            );
        }
        // A start moved into a member: the decoder finds no member end there.
        let mut forged = gzi.clone();
        let at = 8 + 16 * 2;
        let moved = u64::from_le_bytes(forged[at..at + 8].try_into().expect("8 bytes")) + 3;
        forged[at..at + 8].copy_from_slice(&moved.to_le_bytes());
        let index = crate::frames::tests::gzi_index(&forged, gz.len() as u64);
        let decoder = Decoder::framed(Compression::Gzip, 250, Arc::new(index), 0).expect("decoder");
        let err = run(decoder, &gz, 4096, 1 << 20).expect_err("refused");
        assert!(
            err.to_string().contains("does not match the index"),
            "{err}"
        );
    }
}

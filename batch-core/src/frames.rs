//! A compressed object made of independent frames (a seekable zstd stream's frames, listed by
//! its seek table; a gzip stream's members, listed by a bgzip index beside it, `NAME.gzi`) can
//! be entered at any frame, so it is split like a stored object: a frame belongs to the split
//! holding its first stored byte, and the split owns the records that start in its frames'
//! decompressed bytes, by the same rule as a stored object's ([`crate::split`]), reading on
//! into the next frames to finish its last record.
//!
//! The index comes from the object, so it is untrusted: [`FrameIndex::from_sizes`] and
//! [`FrameIndex::from_starts`] check that it describes the object's stored bytes, and the
//! decoder checks, while it decompresses, that every frame ends where the index says
//! ([`FrameIndex::check_end`]), so a lying index fails the batch instead of moving records
//! between splits.

/// Where a frame starts: its stored offset and its decompressed offset (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    pub stored: u64,
    pub decompressed: u64,
}

/// The frames of a compressed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameIndex {
    /// Every frame's start, the first at 0, stored offsets increasing.
    starts: Vec<Boundary>,
    /// Where the frames end: the stream's end (a trailing index after it is not read), and its
    /// decompressed size if the index says it (a gzip index does not).
    stored_end: u64,
    end: Option<u64>,
}

/// An index kept beside its object (a gzip stream's `NAME.gzi`), as the starter read it: the
/// leaves read it again and check it is the same.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sidecar {
    pub size: u64,
    pub sha256: String,
}

impl Sidecar {
    /// Checks its shape: a size within [`MAX_INDEX_BYTES`] and a sha256 in hex.
    pub fn validate(&self) -> Result<(), String> {
        let hex = crate::objects::is_sha256_hex(&self.sha256);
        match (hex, self.size <= MAX_INDEX_BYTES) {
            (true, true) => Ok(()),
            (false, _) => Err("its index's sha256 is not 64 hex digits".into()),
            (_, false) => Err(format!("its index is over {MAX_INDEX_BYTES} bytes")),
        }
    }
}

/// The largest index read (a seek table, a `.gzi`): 8 MiB, about a million frames. A larger one
/// is refused rather than read by every split.
pub const MAX_INDEX_BYTES: u64 = 8 * 1024 * 1024 + 64;

/// The part of a framed object a split owns: the records starting at decompressed positions
/// `first..=last` (1-based), decoded from `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    pub first: u64,
    pub last: u64,
    /// The frame where decoding starts: the one holding the byte before `first`, which says
    /// whether a record starts at `first`.
    pub from: usize,
}

/// Why an index does not describe its object, or a stream does not match its index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("its frame index does not describe the object: {0}")]
    Index(String),
    #[error(
        "frame {frame} does not match the index: the stream's frame ends after {stored} stored \
         and {decompressed} decompressed bytes, the index says {want_stored} and \
         {want_decompressed}"
    )]
    Mismatch {
        frame: usize,
        stored: u64,
        decompressed: u64,
        want_stored: u64,
        want_decompressed: u64,
    },
    #[error(
        "frame {frame} does not match the index: the stream goes on past its end ({stored} \
         stored and {decompressed} decompressed bytes, the index says {want_stored} and \
         {want_decompressed})"
    )]
    Overrun {
        frame: usize,
        stored: u64,
        decompressed: u64,
        want_stored: u64,
        want_decompressed: u64,
    },
}

impl FrameIndex {
    /// The index of frames of these sizes (stored, decompressed), in order, within a stream of
    /// `stored_end` stored bytes decompressing to at most `max_decompressed`.
    pub fn from_sizes(
        sizes: impl IntoIterator<Item = (u64, u64)>,
        stored_end: u64,
        max_decompressed: u64,
    ) -> Result<Self, FrameError> {
        let bad = |reason: String| FrameError::Index(reason);
        let mut starts = Vec::new();
        let mut at = Boundary {
            stored: 0,
            decompressed: 0,
        };
        for (k, (stored, decompressed)) in sizes.into_iter().enumerate() {
            if stored == 0 {
                return Err(bad(format!("frame {k} has no stored bytes")));
            }
            starts.push(at);
            at = Boundary {
                stored: at.stored.saturating_add(stored),
                decompressed: at.decompressed.saturating_add(decompressed),
            };
            if at.stored > stored_end {
                return Err(bad(format!(
                    "its frames' {}+ stored bytes are more than the stream's {stored_end}",
                    at.stored
                )));
            }
            if at.decompressed > max_decompressed {
                return Err(bad(format!(
                    "its frames decompress to more than {max_decompressed} bytes"
                )));
            }
        }
        if at.stored != stored_end {
            return Err(bad(format!(
                "its frames hold {} stored bytes, the stream {stored_end}",
                at.stored
            )));
        }
        if starts.is_empty() {
            return Err(bad("it lists no frame".into()));
        }
        Ok(Self {
            starts,
            stored_end,
            end: Some(at.decompressed),
        })
    }

    /// The index of frames starting at these places after the first (at 0), in order, within a
    /// stream of `stored_end` stored bytes whose decompressed size is not known.
    pub fn from_starts(
        starts: impl IntoIterator<Item = Boundary>,
        stored_end: u64,
        max_decompressed: u64,
    ) -> Result<Self, FrameError> {
        let bad = |reason: String| FrameError::Index(reason);
        let mut all = vec![Boundary {
            stored: 0,
            decompressed: 0,
        }];
        for (k, start) in starts.into_iter().enumerate() {
            let before = all[all.len() - 1];
            if start.stored <= before.stored || start.decompressed < before.decompressed {
                return Err(bad(format!(
                    "frame {}'s start ({}, {}) is not after the one before",
                    k + 1,
                    start.stored,
                    start.decompressed
                )));
            }
            if start.stored >= stored_end || start.decompressed > max_decompressed {
                return Err(bad(format!(
                    "frame {} starts past the stream ({}, {})",
                    k + 1,
                    start.stored,
                    start.decompressed
                )));
            }
            all.push(start);
        }
        Ok(Self {
            starts: all,
            stored_end,
            end: None,
        })
    }

    /// How many frames.
    pub fn frames(&self) -> usize {
        self.starts.len()
    }

    /// Where the frames end, stored.
    pub fn stored_end(&self) -> u64 {
        self.stored_end
    }

    /// Where frame `k` starts.
    pub fn start(&self, k: usize) -> Boundary {
        self.starts[k]
    }

    /// Where frame `k` ends (the next frame's start, or the end; `u64::MAX` decompressed if
    /// the index does not say).
    pub fn frame_end(&self, k: usize) -> Boundary {
        self.starts.get(k + 1).copied().unwrap_or(Boundary {
            stored: self.stored_end,
            decompressed: self.end.unwrap_or(u64::MAX),
        })
    }

    /// What the split of stored positions `first..=last` (1-based) owns: the frames whose
    /// first stored byte it holds; `None` if it holds none, or only frames with no bytes.
    ///
    /// The split whose frames reach the index's decompressed end owns on to the stream's end
    /// (`last` is `u64::MAX`), so it decodes every frame after its own, and a stream longer
    /// than its index says (frames said to be empty or short at the end) fails there instead
    /// of losing its last records; if the index says the stream is empty, the split holding
    /// the first frame owns all of it.
    pub fn owned(&self, first: u64, last: u64) -> Option<Owned> {
        let starting_in = |p: u64| self.starts.partition_point(|s| s.stored + 1 < p);
        let (a, b) = (starting_in(first), starting_in(last.saturating_add(1)));
        if a >= b {
            return None;
        }
        let first = self.starts[a].decompressed + 1;
        let mut last = self.frame_end(b - 1).decompressed;
        let holds_the_end = match self.end {
            Some(0) => a == 0,
            Some(end) => last == end && first <= last,
            None => false,
        };
        if holds_the_end {
            last = u64::MAX;
        }
        if first > last {
            return None;
        }
        // The frame holding position `first - 1` (0-based offset `first - 2`): the last one
        // starting at or before it, which cannot be empty, since the next starts after it.
        let from = match first {
            1 => 0,
            _ => self.starts.partition_point(|s| s.decompressed <= first - 2) - 1,
        };
        Some(Owned { first, last, from })
    }

    /// Checks a frame end the decoder reached, `stored` and `decompressed` bytes after the start
    /// of frame `from`, against the index; returns the next frame the decoder is in.
    pub fn check_end(
        &self,
        from: usize,
        frame: usize,
        stored: u64,
        decompressed: u64,
    ) -> Result<usize, FrameError> {
        let (want_stored, want_decompressed) = self.expected(from, frame);
        let unknown = want_decompressed == u64::MAX && decompressed <= want_decompressed;
        if stored != want_stored || (decompressed != want_decompressed && !unknown) {
            return Err(FrameError::Mismatch {
                frame,
                stored,
                decompressed,
                want_stored,
                want_decompressed,
            });
        }
        Ok(frame + 1)
    }

    /// Checks that the decoder, inside frame `frame`, has not gone past the frame's end.
    pub fn check_within(
        &self,
        from: usize,
        frame: usize,
        stored: u64,
        decompressed: u64,
    ) -> Result<(), FrameError> {
        let (want_stored, want_decompressed) = self.expected(from, frame);
        if frame >= self.frames() || stored > want_stored || decompressed > want_decompressed {
            return Err(FrameError::Overrun {
                frame,
                stored,
                decompressed,
                want_stored,
                want_decompressed,
            });
        }
        Ok(())
    }

    /// Where frame `frame` ends, relative to frame `from`'s start (`u64::MAX` decompressed if
    /// the index does not say).
    fn expected(&self, from: usize, frame: usize) -> (u64, u64) {
        let base = self.starts[from];
        let end = self.frame_end(frame.min(self.frames() - 1));
        let decompressed = match end.decompressed {
            u64::MAX => u64::MAX,
            d => d - base.decompressed,
        };
        (end.stored - base.stored, decompressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of 10 stored bytes decompressing to these sizes.
    fn index(decompressed: &[u64]) -> FrameIndex {
        let sizes = decompressed.iter().map(|&d| (10, d));
        FrameIndex::from_sizes(sizes, 10 * decompressed.len() as u64, u64::MAX).expect("index")
    }

    #[test]
    fn a_split_owns_the_frames_whose_first_stored_byte_it_holds() {
        // Frames start at stored 1, 11, 21, 31; decompressed 1, 101, 201, 301.
        let index = index(&[100, 100, 100, 100]);
        let owned = |first, last| index.owned(first, last);
        assert_eq!(
            owned(1, 10),
            Some(Owned {
                first: 1,
                last: 100,
                from: 0
            })
        );
        assert_eq!(
            owned(2, 11),
            Some(Owned {
                first: 101,
                last: 200,
                from: 0
            })
        );
        assert_eq!(owned(12, 20), None);
        assert_eq!(
            owned(12, 40),
            Some(Owned {
                first: 201,
                last: u64::MAX,
                from: 1
            })
        );
        // Every split of any size together owns each frame once.
        for size in 1..=41 {
            let mut next = 1;
            for first in (1..=40).step_by(size) {
                let last = (first + size as u64 - 1).min(40);
                if let Some(o) = owned(first, last) {
                    assert_eq!(o.first, next, "split {first}..={last}");
                    next = o.last.saturating_add(1);
                }
            }
            assert_eq!(
                next,
                u64::MAX,
                "split size {size}: the last owns on to the end"
            );
        }
    }

    #[test]
    fn empty_frames_own_nothing_and_are_not_where_decoding_starts() {
        let index = index(&[100, 0, 0, 50]);
        assert_eq!(index.owned(11, 30), None);
        assert_eq!(
            index.owned(31, 40),
            Some(Owned {
                first: 101,
                last: u64::MAX,
                from: 0
            })
        );
    }

    #[test]
    fn the_split_holding_the_end_reads_on_to_the_stream_end() {
        // Frames said to be empty at the end: whoever holds the last bytes reads past them.
        let ending = index(&[100, 50, 0, 0]);
        assert_eq!(ending.owned(1, 10).map(|o| o.last), Some(100));
        assert_eq!(ending.owned(11, 20).map(|o| o.last), Some(u64::MAX));
        assert_eq!(ending.owned(21, 40), None);
        assert_eq!(ending.owned(1, 40).map(|o| o.last), Some(u64::MAX));
        // A stream said to be empty: the split holding the first frame owns it all.
        let empty = index(&[0, 0, 0]);
        assert_eq!(
            empty.owned(1, 10),
            Some(Owned {
                first: 1,
                last: u64::MAX,
                from: 0
            })
        );
        assert_eq!(empty.owned(11, 30), None);
    }

    #[test]
    fn an_index_that_does_not_describe_its_stream_is_refused() {
        let cases: [(&[(u64, u64)], u64); 4] = [
            (&[(10, 5), (10, 5)], 30),
            (&[(10, 5), (30, 5)], 30),
            (&[(10, 5), (0, 5), (20, 1)], 30),
            (&[], 30),
        ];
        for (sizes, end) in cases {
            let err = FrameIndex::from_sizes(sizes.iter().copied(), end, u64::MAX);
            assert!(
                matches!(err, Err(FrameError::Index(_))),
                "{sizes:?}: {err:?}"
            );
        }
        let bomb = FrameIndex::from_sizes([(10, 1000), (10, 1000)], 20, 1500);
        assert!(matches!(bomb, Err(FrameError::Index(_))), "{bomb:?}");
        let at = |stored, decompressed| Boundary {
            stored,
            decompressed,
        };
        let starts: [&[Boundary]; 4] = [
            &[at(10, 5), at(10, 6)],
            &[at(10, 5), at(20, 4)],
            &[at(30, 5)],
            &[at(0, 0)],
        ];
        for starts in starts {
            let err = FrameIndex::from_starts(starts.iter().copied(), 30, u64::MAX);
            assert!(
                matches!(err, Err(FrameError::Index(_))),
                "{starts:?}: {err:?}"
            );
        }
    }

    #[test]
    fn an_index_without_the_decompressed_size_owns_to_the_end_of_the_stream() {
        let starts = [(10, 100), (20, 200)].map(|(stored, decompressed)| Boundary {
            stored,
            decompressed,
        });
        let index = FrameIndex::from_starts(starts, 30, u64::MAX).expect("index");
        assert_eq!(
            index.owned(21, 30).map(|o| (o.first, o.last)),
            Some((201, u64::MAX))
        );
        assert_eq!(index.check_end(1, 2, 20, 5000), Ok(3));
        assert!(index.check_end(1, 2, 19, 5000).is_err());
        assert!(index.check_within(1, 2, 19, 1 << 40).is_ok());
    }

    #[test]
    fn frame_ends_are_checked_against_the_index() {
        let index = index(&[100, 100, 100]);
        assert_eq!(index.check_end(1, 1, 10, 100), Ok(2));
        assert_eq!(index.check_end(1, 2, 20, 200), Ok(3));
        assert!(index.check_end(1, 1, 10, 99).is_err());
        assert!(index.check_end(0, 1, 10, 100).is_err());
        assert!(index.check_within(1, 1, 9, 100).is_ok());
        assert!(index.check_within(1, 1, 9, 101).is_err());
        assert!(index.check_within(1, 3, 0, 0).is_err());
    }
}

//! The leaf engine, written once for every `batch`-mode leaf (a range, a retry's list, a data
//! split's records): runs one *span* of items in one plugin instance, in blocks, and hands each
//! item's output or failure to a [`Sink`].
//!
//! The rule it keeps (docs/plugins.md, "Blocks, and which items share an instance"): a span's
//! items share one fresh instance and nothing else decides which items share one; blocks are
//! sized by time ([`BlockSizer`]) and cannot change an output; a refusal is an answer and the
//! instance goes on; when a call fails as a whole (a trap, the deadline, a broken contract, an
//! output over the budget) and the batch tolerates failed items, the span runs again from its
//! first item, one item per call, in a fresh instance and in a fresh one again after each item
//! whose call fails. So a span's outputs are always those of its items run one by one in one
//! instance, with a fresh instance after each item that traps, whatever the load.
//!
//! A sink that keeps results (a split's records, until they are written) gives the span an
//! output budget: each call may copy out only what is left of it, and the span ends after the
//! item whose results reach half of it (the rest of its block is run again in the next span):
//! counts of bytes decide it, never time.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use batch_core::blocks::{BlockSizer, MAX_BLOCK_BYTES};
use batch_core::{FailedItem, Failures, Output, Outputs, PluginConfig};

use crate::metrics::PluginMetrics;
use crate::plugins::{Item, PluginError, PluginSession, RecordBuffer};
use crate::routing;

/// Where a span's results go.
pub(super) trait Sink {
    /// Forgets what the span gave so far: it runs again from its first item.
    fn clear(&mut self);
    /// The output of the item at `index`.
    fn output(&mut self, index: u64, output: Output);
    /// The own failure of the item at `index`, tolerated.
    fn failure(&mut self, index: u64, e: &PluginError);
    /// Bytes of results held so far (for the output budget); 0 for a sink that keeps none.
    fn held(&self) -> usize {
        0
    }
    /// Runs the `len` range items from `first` on straight into the sink, without a result per
    /// item (the hot path of a range leaf), if the sink can; `None` otherwise. `tolerated`,
    /// when the batch tolerates failures, is told of each refusal (which the sink keeps);
    /// without it the first refusal fails the block.
    fn run_range(
        &mut self,
        _session: &mut PluginSession<'static>,
        _first: u64,
        _len: usize,
        _tolerated: Option<&dyn Fn(&PluginError)>,
    ) -> Option<Result<(), PluginError>> {
        None
    }
}

/// The items of one span.
pub(super) enum SpanItems<'a> {
    /// The range items `first..=last`.
    Range { first: u64, last: u64 },
    /// Listed range items (a retry batch's).
    Listed(&'a [u64]),
    /// The records of `range` of a buffer.
    Records(&'a RecordBuffer, Range<usize>),
}

impl SpanItems<'_> {
    pub(super) fn len(&self) -> usize {
        match self {
            SpanItems::Range { first, last } => {
                usize::try_from(last - first + 1).unwrap_or(usize::MAX)
            }
            SpanItems::Listed(items) => items.len(),
            SpanItems::Records(_, range) => range.len(),
        }
    }

    /// How many items from the `at`-th on the next block holds: `wanted`, fewer if their data
    /// passes [`MAX_BLOCK_BYTES`] (at least one).
    fn block_len(&self, at: usize, wanted: usize) -> usize {
        let wanted = wanted.min(self.len() - at);
        let SpanItems::Records(records, range) = self else {
            return wanted;
        };
        let mut bytes = 0;
        let mut len = 0;
        for n in range.start + at..range.start + at + wanted {
            bytes += records.data(n).len();
            if len > 0 && bytes > MAX_BLOCK_BYTES {
                break;
            }
            len += 1;
        }
        len
    }

    /// The index of the `n`-th item.
    fn index(&self, n: usize) -> u64 {
        match self {
            SpanItems::Range { first, .. } => first + n as u64,
            SpanItems::Listed(items) => items[n],
            SpanItems::Records(records, range) => records.index(range.start + n),
        }
    }

    /// Each output or refusal of the items from the `at`-th on, `len` of them, in one call:
    /// records from their buffer ([`PluginSession::process_records`]), range items made
    /// ([`PluginSession::process_each`]).
    fn process(
        &self,
        session: &mut PluginSession<'static>,
        at: usize,
        len: usize,
    ) -> Result<Vec<Result<Output, PluginError>>, PluginError> {
        if session.calls_services() {
            // One item per call (see `Engine::run_span`): its requests are its own.
            let index = self.index(at);
            session.begin_item(index);
            let results = self.call(session, at, 1);
            return session.end_item(index, results);
        }
        self.call(session, at, len)
    }

    fn call(
        &self,
        session: &mut PluginSession<'static>,
        at: usize,
        len: usize,
    ) -> Result<Vec<Result<Output, PluginError>>, PluginError> {
        if let SpanItems::Records(records, span) = self {
            let first = span.start + at;
            return session.process_records(records, first..first + len);
        }
        let items: Vec<Item> = (at..at + len)
            .map(|n| Item {
                index: self.index(n),
                data: None,
            })
            .collect();
        session.process_each(&items)
    }
}

/// How a span ended.
pub(super) enum SpanEnd {
    /// After its first `n` items (all of them, or fewer when the output budget was reached).
    Done(usize),
    /// Cancelled: what it gave is to be dropped.
    Cancelled,
}

/// What runs a span: the plugin's configuration, the batch's tolerance, the slice's
/// cancellation, and where failures are counted.
pub(super) struct Engine<'a> {
    pub(super) config: Option<&'a PluginConfig>,
    pub(super) tolerant: bool,
    pub(super) cancelled: &'a AtomicBool,
    pub(super) metrics: &'a PluginMetrics,
    pub(super) plugin: &'a str,
    /// Bytes of results a span may hold (the memory cap), for a sink that keeps them.
    pub(super) budget: Option<usize>,
}

impl Engine<'_> {
    /// Runs `items` in `session`'s instance (fresh: the caller renews it between spans),
    /// results to `sink`. Returns how the span ended and the session to go on with; `Err` for
    /// a failure that is not a tolerated item's.
    pub(super) fn run_span(
        &self,
        mut session: PluginSession<'static>,
        items: &SpanItems<'_>,
        sink: &mut impl Sink,
        sizer: &mut BlockSizer,
    ) -> Result<(SpanEnd, PluginSession<'static>), PluginError> {
        let mut at = 0;
        while at < items.len() {
            if self.cancelled.load(Ordering::Relaxed) {
                return Ok((SpanEnd::Cancelled, session));
            }
            // A batch that calls services runs an item per call, so each request is one item's
            // (its key, its retry); the calls wait on the network far longer than they cost.
            session = session.renewed_if_worn(self.config)?;
            let calls_services = session.calls_services();
            let len = match calls_services {
                true => 1,
                false => items.block_len(at, sizer.next_len()),
            };
            let started = Instant::now();
            let count = |e: &PluginError| self.metrics.failure(self.plugin, e);
            let ran = match items {
                SpanItems::Range { first, .. } if self.budget.is_none() && !calls_services => sink
                    .run_range(
                        &mut session,
                        first + at as u64,
                        len,
                        self.tolerant.then_some(&count as &dyn Fn(&PluginError)),
                    ),
                _ => None,
            };
            let ran = match ran {
                Some(ran) => ran.map(|()| None),
                None => self.run_block(&mut session, items, at, len, sink),
            };
            match ran {
                Ok(None) => {}
                // The budget was reached inside the block: the span ends there.
                Ok(Some(done)) => return Ok((SpanEnd::Done(at + done), session)),
                Err(e) if self.tolerant && routing::is_item_failure(&e) => {
                    return self
                        .run_one_by_one(session, items, sink)
                        .inspect_err(|e| self.metrics.failure(self.plugin, e));
                }
                Err(e) => {
                    self.metrics.failure(self.plugin, &e);
                    return Err(e);
                }
            }
            sizer.record(len, started.elapsed());
            at += len;
        }
        Ok((SpanEnd::Done(items.len()), session))
    }

    /// The `len` items from the `at`-th on through `process`, each result to the sink:
    /// `Some(n)` when the budget was reached at its `n`-th item, `Err` when the call failed as
    /// a whole (or, without a tolerance, at the first refusal).
    fn run_block(
        &self,
        session: &mut PluginSession<'static>,
        items: &SpanItems<'_>,
        at: usize,
        len: usize,
        sink: &mut impl Sink,
    ) -> Result<Option<usize>, PluginError> {
        if let Some(budget) = self.budget {
            session.set_result_budget(budget.saturating_sub(sink.held()));
        }
        let results = items.process(session, at, len)?;
        for (n, result) in results.into_iter().enumerate() {
            self.give(sink, items.index(at + n), result)?;
            if self.full(sink) {
                return Ok(Some(n + 1));
            }
        }
        Ok(None)
    }

    /// The span from its first item, one item per call (see the module's docs).
    fn run_one_by_one(
        &self,
        session: PluginSession<'static>,
        items: &SpanItems<'_>,
        sink: &mut impl Sink,
    ) -> Result<(SpanEnd, PluginSession<'static>), PluginError> {
        sink.clear();
        let mut session = session.renew(self.config)?;
        for at in 0..items.len() {
            if self.cancelled.load(Ordering::Relaxed) {
                return Ok((SpanEnd::Cancelled, session));
            }
            session = session.renewed_if_worn(self.config)?;
            if let Some(budget) = self.budget {
                session.set_result_budget(budget.saturating_sub(sink.held()));
            }
            let result = match items.process(&mut session, at, 1) {
                Ok(mut results) => results.pop().unwrap_or(Ok(Output::Skip)),
                Err(e) => {
                    session = session.renew(self.config)?;
                    // With results held, an item over what is left starts the next span.
                    if matches!(e, PluginError::OutputTooLarge { .. }) && sink.held() > 0 {
                        return Ok((SpanEnd::Done(at), session));
                    }
                    Err(e)
                }
            };
            self.give(sink, items.index(at), result)?;
            if self.full(sink) {
                return Ok((SpanEnd::Done(at + 1), session));
            }
        }
        Ok((SpanEnd::Done(items.len()), session))
    }

    /// The result of the item at `index` to the sink: an output, a tolerated failure (counted
    /// here), or the leaf's failure (counted by [`Self::run_span`], which returns it).
    fn give(
        &self,
        sink: &mut impl Sink,
        index: u64,
        result: Result<Output, PluginError>,
    ) -> Result<(), PluginError> {
        match result {
            Ok(output) => sink.output(index, output),
            Err(e) if self.tolerant && routing::is_item_failure(&e) => {
                self.metrics.failure(self.plugin, &e);
                sink.failure(index, &e);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Whether the sink holds half its budget or more: the span ends.
    fn full(&self, sink: &impl Sink) -> bool {
        self.budget.is_some_and(|budget| sink.held() >= budget / 2)
    }
}

/// A range or list leaf's sink: outputs aggregated, failures collected.
#[derive(Default)]
pub(super) struct Aggregate {
    pub(super) outputs: Outputs,
    pub(super) failures: Failures,
    /// Scratch space for a block's numbers, reused from block to block.
    numbers: Vec<u64>,
}

impl Aggregate {
    fn fail(failures: &mut Failures, index: u64, e: &PluginError) {
        failures.push(FailedItem::new(index, routing::kind(e), &e.message()));
    }
}

impl Sink for Aggregate {
    fn clear(&mut self) {
        self.outputs = Outputs::default();
        self.failures = Failures::default();
    }

    fn output(&mut self, _index: u64, output: Output) {
        self.outputs.add(&output);
    }

    fn failure(&mut self, index: u64, e: &PluginError) {
        Self::fail(&mut self.failures, index, e);
    }

    fn run_range(
        &mut self,
        session: &mut PluginSession<'static>,
        first: u64,
        len: usize,
        tolerated: Option<&dyn Fn(&PluginError)>,
    ) -> Option<Result<(), PluginError>> {
        let (outputs, failures) = (&mut self.outputs, &mut self.failures);
        let mut refused = |e: PluginError| {
            if let Some(count) = tolerated {
                count(&e);
            }
            Self::fail(failures, e.item().unwrap_or_default(), &e);
        };
        Some(session.process_range_into(
            first,
            len,
            outputs,
            &mut self.numbers,
            tolerated.map(|_| &mut refused as &mut dyn FnMut(PluginError)),
        ))
    }
}

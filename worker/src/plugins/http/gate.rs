//! One leaf's pace: how many of its requests may be in flight at once, how many may start in
//! any window of a second, and how long it holds back after the service said "too many"
//! (429, 503). Every attempt of every request of the leaf passes the gate.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use batch_core::http::LeafShare;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The window a rate counts over, with a margin: requests that left a second apart may
/// arrive closer together, so the leaf spaces its windows this much wider than a second.
pub const RATE_WINDOW: Duration = Duration::from_millis(1050);

/// The pacing state of one leaf.
pub struct Gate {
    in_flight: Arc<Semaphore>,
    /// The leaf's share, per window; `None`: no rate limit.
    max_rate: Option<u32>,
    state: Mutex<Pace>,
}

struct Pace {
    /// When the leaf's last requests started, at most `rate` of them.
    started: VecDeque<Instant>,
    /// The rate now: halved at each 429 or 503, back up by one after as many successes.
    rate: Option<u32>,
    successes: u32,
    /// No request starts before this (a `Retry-After`, a backoff).
    paused_until: Option<Instant>,
}

impl Gate {
    pub fn new(share: LeafShare) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(share.concurrent.max(1) as usize)),
            max_rate: share.rate,
            state: Mutex::new(Pace {
                started: VecDeque::new(),
                rate: share.rate,
                successes: 0,
                // A leaf takes over its share from a leaf that just ended (the tree starts
                // the next when one finishes): waiting one window first, the two never send
                // within the same second, so the leaves' shares still add up to the limit.
                paused_until: share.rate.map(|_| Instant::now() + RATE_WINDOW),
            }),
        }
    }

    /// Waits until a request may start: a place among those in flight, then a place in the
    /// window and the end of any pause. Hold the permit until the response is read.
    pub async fn admit(&self) -> OwnedSemaphorePermit {
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the gate's semaphore is never closed"));
        loop {
            let wait = {
                let mut pace = self.pace();
                let now = Instant::now();
                pace.next_start(now)
            };
            match wait {
                None => return permit,
                Some(until) => tokio::time::sleep_until(until.into()).await,
            }
        }
    }

    /// The service answered 429 or 503: nobody in the leaf starts a request for `wait`, and
    /// the leaf's rate halves (at least one per window).
    pub fn throttled(&self, wait: Duration) {
        let mut pace = self.pace();
        let until = Instant::now() + wait;
        pace.paused_until = Some(pace.paused_until.map_or(until, |p| p.max(until)));
        pace.rate = pace.rate.map(|r| (r / 2).max(1));
        pace.successes = 0;
    }

    /// A request succeeded: after as many successes as the rate, the rate grows back by one,
    /// up to the leaf's share.
    pub fn succeeded(&self) {
        let mut pace = self.pace();
        let (Some(rate), Some(max)) = (pace.rate, self.max_rate) else {
            return;
        };
        pace.successes += 1;
        if pace.successes >= rate && rate < max {
            pace.rate = Some(rate + 1);
            pace.successes = 0;
        }
    }

    /// The rate now (for tests and logs).
    pub fn rate(&self) -> Option<u32> {
        self.pace().rate
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pace {
    /// `None` when a request may start now (and records it), else when to look again.
    fn next_start(&mut self, now: Instant) -> Option<Instant> {
        if let Some(until) = self.paused_until {
            if until > now {
                return Some(until);
            }
            self.paused_until = None;
        }
        if let Some(rate) = self.rate {
            while self
                .started
                .front()
                .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
            {
                self.started.pop_front();
            }
            if self.started.len() >= rate as usize {
                return self.started.front().map(|t| *t + RATE_WINDOW);
            }
            self.started.push_back(now);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(rate: Option<u32>) -> Pace {
        Pace {
            started: VecDeque::new(),
            rate,
            successes: 0,
            paused_until: None,
        }
    }

    #[test]
    fn no_window_holds_more_than_the_rate() {
        let mut p = pace(Some(3));
        let t0 = Instant::now();
        let mut starts = Vec::new();
        let mut now = t0;
        while starts.len() < 10 {
            match p.next_start(now) {
                None => starts.push(now),
                Some(until) => now = until,
            }
        }
        for (i, t) in starts.iter().enumerate() {
            let within = starts[i..]
                .iter()
                .filter(|u| u.duration_since(*t) < RATE_WINDOW)
                .count();
            assert!(within <= 3, "{within} starts within a window from {i}");
        }
    }

    #[test]
    fn throttling_halves_the_rate_and_pauses_then_it_grows_back() {
        let gate = Gate::new(LeafShare {
            rate: Some(8),
            concurrent: 1,
        });
        gate.throttled(Duration::from_secs(2));
        assert_eq!(gate.rate(), Some(4));
        let now = Instant::now();
        assert!(gate.pace().next_start(now).is_some_and(|t| t > now));
        for _ in 0..4 {
            gate.succeeded();
        }
        assert_eq!(gate.rate(), Some(5));
        for _ in 0..100 {
            gate.succeeded();
        }
        assert_eq!(gate.rate(), Some(8), "never past the share");
        let unlimited = Gate::new(LeafShare {
            rate: None,
            concurrent: 1,
        });
        unlimited.throttled(Duration::from_millis(1));
        assert_eq!(unlimited.rate(), None);
    }
}

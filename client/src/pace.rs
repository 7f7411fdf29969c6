//! The pace of the link to the parent hub, measured on every request that carries a body, so no
//! request is larger than the line can carry well inside its timeout: at 8 kbit/s a 34 KB change
//! set sent whole needs longer than a 30 s timeout and would be cut and resent from zero for
//! ever; sent in pieces sized to the measured rate, every piece arrives (and the hub keeps it).
//! Pure: the caller keeps the rate ([`Pace::rate`], [`Pace::from_rate`]) for its next run.

use std::time::Duration;

/// The first piece when nothing is known of the line: at 1,000 bytes/s (8 kbit/s) it takes 4 s.
pub const FIRST_PIECE: usize = 4 * 1024;
/// A body below this tells little about the line (the request's own latency dominates).
const MIN_SAMPLE: usize = 2 * 1024;

/// Bytes per second the link carried lately (none measured yet: `None`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pace {
    rate: Option<f64>,
}

impl Pace {
    /// A pace kept from an earlier run; a rate that is not a positive number counts as unknown.
    pub fn from_rate(rate: Option<f64>) -> Pace {
        Pace { rate: rate.filter(|r| r.is_finite() && *r > 0.0) }
    }

    /// The measured rate in bytes per second, to keep for the next run.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// One request carried `bytes` in `took` (the answer included): the estimate moves halfway
    /// to it, so a line that slows down is followed within a request or two.
    pub fn observe(&mut self, bytes: usize, took: Duration) {
        if bytes < MIN_SAMPLE {
            return;
        }
        let sample = bytes as f64 / took.as_secs_f64().max(0.001);
        self.rate = Some(self.rate.map_or(sample, |r| (r + sample) / 2.0));
    }

    /// A request was cut by its timeout: the line is slower than thought.
    pub fn timed_out(&mut self, bytes: usize, timeout: Duration) {
        let at_most = bytes as f64 / timeout.as_secs_f64().max(0.001) / 2.0;
        self.rate = Some(self.rate.map_or(at_most, |r| r.min(at_most)));
    }

    /// The largest body to send in one request: what the line carries in a quarter of the
    /// timeout, between [`FIRST_PIECE`] and `max`.
    pub fn piece(&self, timeout: Duration, max: usize) -> usize {
        match self.rate {
            None => FIRST_PIECE.min(max),
            Some(r) => ((r * timeout.as_secs_f64() / 4.0) as usize).clamp(FIRST_PIECE.min(max), max.max(1)),
        }
    }

    /// Whether an envelope of `len` bytes goes in pieces rather than as one request: when it is
    /// over `threshold` (the sender's), or over what the line carries in a third of the timeout
    /// (before anything is measured: over four first pieces, 16 KiB).
    pub fn chunk(&self, len: usize, timeout: Duration, threshold: usize) -> bool {
        let budget = match self.rate {
            None => 4 * FIRST_PIECE,
            Some(r) => (r * timeout.as_secs_f64() / 3.0) as usize,
        };
        len > threshold.min(budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_eight_kbit_line_gets_pieces_that_fit_its_timeout() {
        let timeout = Duration::from_secs(30);
        let mut p = Pace::from_rate(None);
        assert!(p.chunk(34_000, timeout, 64 * 1024), "unknown line: a 34 KB change set goes in pieces");
        assert_eq!(p.piece(timeout, 32 * 1024), FIRST_PIECE);
        p.observe(4_096, Duration::from_secs(4));
        let piece = p.piece(timeout, 32 * 1024);
        assert!(piece * 1000 / 1024 <= 30_000 / 4 + 1000 && piece >= FIRST_PIECE, "{piece}");
        // A fast line: one request for what fits, big pieces for the rest.
        let mut fast = Pace::from_rate(None);
        fast.observe(4_096, Duration::from_millis(2));
        assert!(!fast.chunk(34_000, timeout, 64 * 1024));
        assert_eq!(fast.piece(timeout, 32 * 1024), 32 * 1024);
    }

    #[test]
    fn a_kept_rate_that_is_not_a_positive_number_is_unknown() {
        for bad in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Pace::from_rate(Some(bad)).rate(), None, "{bad}");
        }
        assert_eq!(Pace::from_rate(Some(1000.0)).rate(), Some(1000.0));
    }

    proptest! {
        /// Whatever was measured, a piece is never over `max` nor under the first piece, and
        /// after a timeout the next piece is smaller than the one cut.
        #[test]
        fn pieces_stay_in_bounds_and_shrink_after_a_timeout(samples in proptest::collection::vec((2048usize..1_000_000, 1u64..60_000), 0..8), max in 4096usize..4_000_000) {
            let timeout = Duration::from_secs(30);
            let mut p = Pace::from_rate(None);
            for (bytes, ms) in samples {
                p.observe(bytes, Duration::from_millis(ms));
            }
            let piece = p.piece(timeout, max);
            prop_assert!(piece <= max && piece >= FIRST_PIECE);
            p.timed_out(piece, timeout);
            prop_assert!(p.piece(timeout, max) <= piece);
        }
    }
}

//! Hybrid logical clock: versions that respect causality even when a township's clock is hours off.
//! 48 bits of milliseconds since the Unix epoch, 16 bits of logical counter.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hlc(pub u64);

impl Hlc {
    /// The version of a field that was never written: an edit "based on nothing".
    pub const ZERO: Hlc = Hlc(0);

    pub fn new(millis: u64, logical: u16) -> Self {
        Hlc((millis << 16) | logical as u64)
    }

    pub fn millis(self) -> u64 {
        self.0 >> 16
    }

    pub fn logical(self) -> u16 {
        self.0 as u16
    }

    /// Next timestamp for a local event, given the wall clock in milliseconds.
    pub fn tick(self, wall_millis: u64) -> Hlc {
        if wall_millis > self.millis() { Hlc::new(wall_millis, 0) } else { self.bump() }
    }

    /// Next timestamp after receiving `remote`: greater than both it and our last one.
    pub fn observe(self, remote: Hlc, wall_millis: u64) -> Hlc {
        let top = self.max(remote);
        if wall_millis > top.millis() { Hlc::new(wall_millis, 0) } else { top.bump() }
    }

    fn bump(self) -> Hlc {
        // The logical counter overflowing carries into the millisecond part, which stays monotonic.
        Hlc(self.0 + 1)
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis(), self.logical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn strictly_monotonic_whatever_the_wall_clock(walls in proptest::collection::vec(0u64..1u64 << 40, 1..50),
                                                      remotes in proptest::collection::vec(0u64..u64::MAX >> 2, 1..50)) {
            let mut h = Hlc::ZERO;
            for (i, w) in walls.iter().enumerate() {
                let next = if i % 2 == 0 { h.tick(*w) } else { h.observe(Hlc(remotes[i % remotes.len()]), *w) };
                prop_assert!(next > h);
                if i % 2 == 1 { prop_assert!(next > Hlc(remotes[i % remotes.len()])); }
                h = next;
            }
        }
    }
}

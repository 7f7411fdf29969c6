//! Test support shared by the black-box tests, the three-tier demo, the chaos suite and the
//! benchmarks: the region fixture, a generator of realistic households, and a fault-injecting
//! TCP proxy for unreliable links.

pub mod bench_support;
pub mod generate;
pub mod harness;
pub mod proxy;
pub mod regions;
pub mod scale;

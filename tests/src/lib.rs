//! Test support shared by the black-box tests, the three-tier demo, the chaos suite and the
//! benchmarks: the region fixture, a generator of realistic households, a fault-injecting TCP
//! proxy for unreliable links, and a county forwarding to its province through it.

pub mod bench_slow_line;
pub mod bench_support;
pub mod forwarding;
pub mod generate;
pub mod harness;
pub mod proxy;
pub mod regions;
pub mod scale;
pub mod stored;

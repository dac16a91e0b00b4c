//! The shared test harness lives in `paddock_server::testkit`.

#![allow(unused_imports)]

pub use paddock_server::testkit::*;

//! The shared test kit (crate `dragonfly-testkit`), under the names these tests use.

pub use dragonfly_testkit::{
    Server as TestServer, eventually, expect_error, expect_json, report, urlencode,
};

//! svmkit scenario files: a small TOML file says what processes map, which devices run
//! which driver, which threads do what, and what must happen; [`parse()`] checks it
//! (every mistake reported as `file:line:col` with the text, a caret and a hint) and
//! [`run()`] runs it on the model on one deterministic schedule, writing down each step,
//! what it returned and what it changed. The format is documented in
//! `docs/SCENARIOS.md`; examples live in `examples/`.
//!
//! ```
//! let src = r#"
//! [scenario]
//! name = "write, read back"
//!
//! [[process]]
//! name = "app"
//!
//! [[map]]
//! name = "buf"
//! process = "app"
//! len = "1 page"
//!
//! [[thread]]
//! name = "cpu"
//! process = "app"
//! steps = [
//!   { op = "write", at = "buf+8", value = 7 },
//!   { op = "read", at = "buf+8", expect = 7 },
//! ]
//! "#;
//! let sc = svmkit_scenario::parse("doc.toml", src).unwrap();
//! let report = svmkit_scenario::run(&sc, &Default::default()).unwrap();
//! assert!(report.passed, "{}", report.account());
//! ```

pub mod ast;
pub mod describe;
pub mod diag;
pub mod engine;
pub mod explore;
pub mod oracle;
pub mod parse;
mod world;

pub use ast::Scenario;
pub use diag::ParseError;
pub use engine::{RunOptions, RunOutcome, RunReport, StepError, run};
pub use parse::parse;

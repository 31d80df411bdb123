//! The subcommands of the `rlipv2` binary, one module each: thin over the library (parse, call,
//! print).

pub mod bench;
pub mod convert;
pub mod detect;
pub mod eval;
pub mod info;
pub mod op;

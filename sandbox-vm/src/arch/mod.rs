//! Per-architecture machine setup. Only x86_64 exists today.

pub mod x86_64;

//! virtio device models driven by a test guest driver on real guest memory: the block and
//! console devices, with well-formed and malformed descriptor chains.

mod block;
mod console;
mod driver;

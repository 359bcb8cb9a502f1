//! OCI seccomp profiles compiled to BPF with seccompiler.

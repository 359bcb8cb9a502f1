//! cgroup managers for v1, v2 and the hybrid layout.

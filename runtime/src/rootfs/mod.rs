//! The container root filesystem: mounts, devices, masked and read-only paths, pivot_root.

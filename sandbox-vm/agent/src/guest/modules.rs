//! Kernel modules the guest image lists in /lib/modules/load-order, dependencies first.

use std::os::fd::AsRawFd;
use std::path::Path;

use crate::say;

pub const LOAD_ORDER: &str = "/lib/modules/load-order";

/// Lets the kernel decompress the module (CONFIG_MODULE_DECOMPRESS), for .ko.xz/.zst/.gz.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// The module file names in a load-order file: one per line, blank lines and `#` comments
/// skipped. A name with a '/' is refused: every module sits in /lib/modules itself.
pub fn names(text: &str) -> Vec<Result<&str, String>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|name| {
            if name.contains('/') || name == ".." {
                Err(format!(
                    "{LOAD_ORDER}: {name:?} is not a file name in /lib/modules"
                ))
            } else {
                Ok(name)
            }
        })
        .collect()
}

/// Loads every listed module; failures are reported and the rest still loaded (a missing
/// module shows up later, e.g. as a channel that cannot be opened, with its own error).
pub fn load_listed(list: &Path) {
    let text = match std::fs::read_to_string(list) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            say::warn(&format!("{}: {e}", list.display()));
            return;
        }
    };
    let dir = list.parent().unwrap_or(Path::new("/lib/modules"));
    for name in names(&text) {
        match name.and_then(|n| load(&dir.join(n))) {
            Ok(()) => {}
            Err(e) => say::warn(&e),
        }
    }
}

fn load(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.to_string_lossy();
    let flags = if [".xz", ".zst", ".gz"].iter().any(|ext| name.ends_with(ext)) {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    // SAFETY: finit_module reads the open module file and a NUL-terminated (empty) parameter
    // string that lives for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        // Built in, or loaded as a dependency already.
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("loading module {}: {err}", path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_order_lists_plain_file_names() {
        let text = "# deps first\nvsock.ko.xz\n\n  vmw_vsock_virtio_transport_common.ko.xz \nbad/../x.ko\n";
        let got = names(text);
        assert_eq!(got[0], Ok("vsock.ko.xz"));
        assert_eq!(got[1], Ok("vmw_vsock_virtio_transport_common.ko.xz"));
        assert!(got[2].as_ref().unwrap_err().contains("bad/../x.ko"));
        assert_eq!(got.len(), 3);
    }
}

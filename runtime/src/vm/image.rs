//! The guest image (kernel + initramfs with the agent as /init) a VM sandbox boots.

use std::path::PathBuf;

use crate::isolation::VmSettings;

#[derive(Debug, Clone)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// The image to boot: `RUNVM_GUEST_KERNEL` + `RUNVM_GUEST_INITRAMFS` when both are set (tests,
/// hand-made images), else the cached image `runvm guest-image` prepares.
pub fn guest_image(_settings: &VmSettings) -> Result<GuestImage, String> {
    match (
        std::env::var_os("RUNVM_GUEST_KERNEL"),
        std::env::var_os("RUNVM_GUEST_INITRAMFS"),
    ) {
        (Some(kernel), Some(initramfs)) => {
            let image = GuestImage {
                kernel: kernel.into(),
                initramfs: initramfs.into(),
            };
            for path in [&image.kernel, &image.initramfs] {
                if !path.is_file() {
                    return Err(format!("guest image: {} is not a file", path.display()));
                }
            }
            Ok(image)
        }
        _ => Err(
            "guest image: no image yet (set RUNVM_GUEST_KERNEL and RUNVM_GUEST_INITRAMFS)".into(),
        ),
    }
}

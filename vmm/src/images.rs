//! Finding the default guest image built by `guest-images/build`.

use std::path::{Path, PathBuf};

/// A built guest: kernel and initramfs.
#[derive(Clone, Debug)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Folders searched for `build/guest/<variant>`, in order: `$CXLVMM_GUEST_DIR`,
/// the checkout the binary was built in (target/<profile>/cxlvmm), and the
/// current directory.
fn candidates(variant: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("CXLVMM_GUEST_DIR") {
        dirs.push(PathBuf::from(d).join(variant));
    }
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(2).take(3) {
            dirs.push(up.join("build/guest").join(variant));
        }
    }
    dirs.push(Path::new("build/guest").join(variant));
    dirs
}

pub fn find(variant: &str) -> Result<GuestImage, String> {
    let dirs = candidates(variant);
    for d in &dirs {
        let img = GuestImage {
            kernel: d.join("vmlinuz"),
            initrd: d.join("initrd.img"),
        };
        if img.kernel.is_file() && img.initrd.is_file() {
            return Ok(img);
        }
    }
    let searched: Vec<_> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "no guest image '{variant}' found (looked in {}); build it with `guest-images/build {variant}` or pass --kernel/--initrd",
        searched.join(", ")
    ))
}

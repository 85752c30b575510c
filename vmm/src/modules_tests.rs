use super::*;
use crate::initramfs::tests::parse;
use crate::initramfs::S_IFREG;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("cxlvmm-modules-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    fn write(&self, rel: &str, data: &[u8]) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const BIG: u64 = 1 << 30;

/// (name, mode, data) of every member, and the archive's length.
fn unpack(t: &ModuleTree) -> Vec<(String, u32, Vec<u8>)> {
    let a = t.archive(BIG).unwrap();
    assert_eq!(a.len() % 4, 0, "archive not padded to 4 bytes");
    parse(&a)
}

fn names(entries: &[(String, u32, Vec<u8>)]) -> Vec<&str> {
    entries.iter().map(|e| e.0.as_str()).collect()
}

#[test]
fn installed_tree_with_modules_dep_packs_every_file_under_its_release() {
    let d = TempDir::new("installed");
    let root = d.0.join("6.12.0-dev");
    d.write("6.12.0-dev/modules.dep", b"kernel/drivers/a.ko:\n");
    d.write("6.12.0-dev/kernel/drivers/a.ko", b"ELF-a");
    d.write("6.12.0-dev/kernel/drivers/sub/b.ko.xz", b"xz-b");
    std::os::unix::fs::symlink("/", root.join("build")).unwrap();
    let t = ModuleTree::find(&root).unwrap();
    assert_eq!(t.release, "6.12.0-dev");
    assert!(t.has_modules_dep());
    let e = unpack(&t);
    assert_eq!(
        names(&e),
        [
            "lib",
            "lib/modules",
            "lib/modules/6.12.0-dev",
            "lib/modules/6.12.0-dev/kernel",
            "lib/modules/6.12.0-dev/kernel/drivers",
            "lib/modules/6.12.0-dev/kernel/drivers/sub",
            "lib/modules/6.12.0-dev/kernel/drivers/a.ko",
            "lib/modules/6.12.0-dev/kernel/drivers/sub/b.ko.xz",
            "lib/modules/6.12.0-dev/modules.dep",
        ]
    );
    assert!(e[..6].iter().all(|x| x.1 == 0o040755 && x.2.is_empty()));
    assert_eq!(e[6].1, 0o100644);
    assert_eq!(e[6].2, b"ELF-a");
    assert_eq!(e[7].2, b"xz-b");
    assert_eq!(e[8].2, b"kernel/drivers/a.ko:\n");
}

#[test]
fn folder_holding_lib_modules_finds_the_release_and_asks_for_depmod() {
    let d = TempDir::new("root");
    d.write("usr/lib/modules/6.1.0-x/kernel/m.ko", b"m");
    let t = ModuleTree::find(&d.0).unwrap();
    assert_eq!(t.release, "6.1.0-x");
    assert!(!t.has_modules_dep());
    let e = unpack(&t);
    let marker = e.iter().find(|x| x.0 == DEPMOD_MARKER).unwrap();
    assert_eq!(marker.2, b"6.1.0-x\n");
    let cxlvmm_dir = e.iter().position(|x| x.0 == "cxlvmm").unwrap();
    let marker_at = e.iter().position(|x| x.0 == DEPMOD_MARKER).unwrap();
    assert!(cxlvmm_dir < marker_at);
    assert!(names(&e).contains(&"lib/modules/6.1.0-x/kernel/m.ko"));
}

#[test]
fn build_tree_takes_ko_files_and_installs_modules_order() {
    let d = TempDir::new("build");
    d.write("include/config/kernel.release", b"6.13.0-rc1+\n");
    d.write("Kconfig", b"");
    d.write("kernel/fork.c", b"src");
    d.write("drivers/cxl/cxl_test.ko", b"ko1");
    d.write("drivers/cxl/cxl_test.o", b"obj");
    d.write("fs/x.ko", b"ko2");
    d.write(".git/objects/y.ko", b"not a module");
    d.write("modules.order", b"drivers/cxl/cxl_test.o\nfs/x.ko\n");
    d.write("modules.builtin", b"kernel/fs/ext4/ext4.ko\n");
    let t = ModuleTree::find(&d.0).unwrap();
    assert_eq!(t.release, "6.13.0-rc1+");
    let e = unpack(&t);
    let files: Vec<_> = e.iter().filter(|x| x.1 & S_IFREG != 0).collect();
    let base = "lib/modules/6.13.0-rc1+";
    assert_eq!(
        files.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        [
            format!("{base}/kernel/drivers/cxl/cxl_test.ko"),
            format!("{base}/kernel/fs/x.ko"),
            format!("{base}/modules.order"),
            format!("{base}/modules.builtin"),
            DEPMOD_MARKER.to_string(),
        ]
    );
    assert_eq!(files[0].2, b"ko1");
    assert_eq!(
        files[2].2,
        b"kernel/drivers/cxl/cxl_test.ko\nkernel/fs/x.ko\n"
    );
    assert_eq!(files[3].2, b"kernel/fs/ext4/ext4.ko\n");
    assert_eq!(files[4].2, b"6.13.0-rc1+\n");
}

#[test]
fn errors_name_what_is_wrong() {
    let missing = Path::new("/nonexistent/mods");
    assert!(matches!(
        ModuleTree::find(missing),
        Err(ModulesError::NotADir)
    ));

    let d = TempDir::new("norel");
    d.write("README", b"x");
    let e = ModuleTree::find(&d.0).unwrap_err();
    assert!(matches!(e, ModulesError::NoRelease));
    assert!(e.to_string().contains("no kernel release found"));

    let d = TempDir::new("two");
    d.write("lib/modules/a/kernel/x.ko", b"x");
    d.write("lib/modules/b/kernel/y.ko", b"y");
    let e = ModuleTree::find(&d.0).unwrap_err();
    assert!(e.to_string().contains("2 module folders (a, b)"), "{e}");

    let d = TempDir::new("badrel");
    d.write("include/config/kernel.release", b"\n");
    assert!(matches!(
        ModuleTree::find(&d.0),
        Err(ModulesError::BadRelease { .. })
    ));

    let d = TempDir::new("empty");
    d.write("include/config/kernel.release", b"6.12.0\n");
    assert!(matches!(ModuleTree::find(&d.0), Err(ModulesError::Empty)));
}

#[test]
fn archive_larger_than_the_room_is_refused() {
    let d = TempDir::new("big");
    d.write("6.12.0/modules.dep", b"");
    d.write("6.12.0/kernel/big.ko", &vec![0u8; 64 << 10]);
    let t = ModuleTree::find(&d.0.join("6.12.0")).unwrap();
    let e = t.archive(32 << 10).unwrap_err();
    assert!(matches!(e, ModulesError::TooLarge { limit } if limit == 32 << 10));
    assert!(t.archive(128 << 10).is_ok());
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let d = TempDir::new("unreadable");
    d.write("6.12.0/modules.dep", b"");
    let t = ModuleTree {
        release: "6.12.0".into(),
        members: vec![Member {
            name: "kernel/gone.ko".into(),
            source: Source::File(d.0.join("6.12.0/kernel/gone.ko")),
        }],
    };
    let e = t.archive(BIG).unwrap_err();
    assert!(e.to_string().contains("gone.ko"), "{e}");
}

#[test]
fn modules_order_of_both_formats_installs_the_same() {
    assert_eq!(
        installed_order("a/b.o\nc.ko\n\nkernel/d.ko\n"),
        "kernel/a/b.ko\nkernel/c.ko\nkernel/d.ko\n"
    );
}

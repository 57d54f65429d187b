//! The files around an image: what an input path is, whether an output
//! path may be replaced, the mode and owner a replacement inherits, free
//! space, and the temporaries a writer makes beside its target.
//!
//! * **Inputs** are opened without blocking (`O_NONBLOCK`, `O_NOCTTY`), so
//!   a FIFO or a terminal never holds the caller, and anything but a
//!   regular file is refused with a message that says what it is
//!   ([`open_regular`]).
//! * **Outputs** ([`check_output`]): a missing path, a regular file, or,
//!   for a composed image, a folder that holds one (it has `header.ston`),
//!   may be replaced; a FIFO, a device node, a socket or any other folder is
//!   refused before anything is written. A symbolic link is written
//!   through: the file it points to is replaced and the link stays; a link
//!   to nothing is refused.
//! * **Temporaries** ([`create_temp`]) are named
//!   `.NAME.snapshot-PID-N.tmp` beside the target and hold an exclusive
//!   `flock` for as long as their writer lives (a background writer's child
//!   inherits it). A temporary nobody holds locked is stale
//!   ([`is_stale`]), whichever PID namespace its writer ran in.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A file that holds an exclusive `flock` until it is dropped.
pub type LockedFile = Flock<File>;

/// The longest file name most file systems take (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Room a temporary's name needs beyond the target's (dot, marker, pid,
/// counter, suffix).
const TEMP_NAME_EXTRA: usize = 48;

/// What a file type is, in words: "a FIFO (named pipe)", "a folder", ...
pub fn kind_name(t: &fs::FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Opens `path` for reading if it is a regular file, without ever blocking;
/// anything else is an error that says what it is and that it is not
/// `expected` (e.g. "an image file").
pub fn open_regular(path: &Path, expected: &str) -> io::Result<File> {
    // The type is checked before opening, so that no device is opened at
    // all, and again on the open file, which cannot block on a FIFO put in
    // its place meanwhile.
    let check = |m: &Metadata| {
        if m.is_file() {
            Ok(())
        } else {
            Err(invalid(format!(
                "{}, not {expected}",
                kind_name(&m.file_type())
            )))
        }
    };
    check(&fs::metadata(path)?)?;
    let file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    check(&file.metadata()?)?;
    Ok(file)
}

/// Does `path` name anything (a dangling symbolic link counts)?
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The form of an image being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutForm {
    /// One file.
    Single,
    /// A Pharo composed folder.
    Composed,
}

/// Where an output goes once checked.
#[derive(Debug, Clone)]
pub struct Target {
    /// The path to replace: the output itself, or the file a symbolic link
    /// points to.
    pub path: PathBuf,
    /// What is there now, if anything.
    pub existing: Option<Metadata>,
}

/// Checks that `out` may be replaced by an image of form `form`, before
/// anything is written; see the module doc for the rules. The error says
/// what `out` is and why it is kept.
pub fn check_output(out: &Path, form: OutForm) -> io::Result<Target> {
    let lmeta = match fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Target {
                path: out.to_path_buf(),
                existing: None,
            })
        }
        Err(e) => return Err(e),
    };
    let (path, meta) = if lmeta.file_type().is_symlink() {
        let to = fs::read_link(out)?;
        match fs::metadata(out) {
            Ok(m) => (fs::canonicalize(out)?, m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(invalid(format!(
                    "a symbolic link to {}, which does not exist; nothing to write through to",
                    to.display()
                )))
            }
            Err(e) => return Err(e),
        }
    } else {
        (out.to_path_buf(), lmeta)
    };
    let t = meta.file_type();
    let refuse = |why: String| Err(invalid(why));
    if t.is_file() {
        // Either form may replace a regular file.
    } else if t.is_dir() {
        match form {
            OutForm::Single => {
                return refuse(
                    "a directory, which a single-file image does not replace \
                     (write a composed image there, or name a file)"
                        .into(),
                )
            }
            OutForm::Composed if !path.join("header.ston").is_file() => {
                return refuse(
                    "a folder that is not a composed image (no header.ston), \
                     which is not replaced"
                        .into(),
                )
            }
            OutForm::Composed => {}
        }
    } else {
        return refuse(format!(
            "{}; only a regular file or a composed image's folder is replaced",
            kind_name(&t)
        ));
    }
    Ok(Target {
        path,
        existing: Some(meta),
    })
}

/// Gives `to` the owner, group and permission bits of `from`, as far as
/// this process may: the owner when it may change it (root), else the group
/// when it is one of its own, and the mode in any case. The mode is set
/// last, since a change of owner clears the set-user-ID bit.
pub fn copy_owner_and_mode(from: &Metadata, to: &File) -> io::Result<()> {
    let here = to.metadata()?;
    if (here.uid(), here.gid()) != (from.uid(), from.gid())
        && std::os::unix::fs::fchown(to, Some(from.uid()), Some(from.gid())).is_err()
    {
        let _ = std::os::unix::fs::fchown(to, None, Some(from.gid()));
    }
    to.set_permissions(fs::Permissions::from_mode(from.mode() & 0o7777))
}

/// Fails unless the file system holding `dir` has `need` bytes free for
/// this process; `what` names what needs them.
pub fn check_free_space(dir: &Path, need: u64, what: &str) -> io::Result<()> {
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        // A file system that cannot say is written to and may fail then.
        return Ok(());
    };
    let free = st.blocks_available().saturating_mul(st.fragment_size());
    if need > free {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "{what} needs {need} bytes, but the file system of {} has {free} bytes free",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// The start of every temporary's name for a target called `name`:
/// `.NAME.snapshot-`, with NAME cut short when the whole would pass
/// [`NAME_MAX`].
pub fn temp_prefix(name: &std::ffi::OsStr) -> String {
    let full = name.to_string_lossy();
    let mut cut = full.len().min(NAME_MAX - TEMP_NAME_EXTRA);
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}.snapshot-", &full[..cut])
}

/// Creates a new temporary beside the target, `O_EXCL`, as a file or (with
/// `folder`) a folder, and locks it; returns its path and the locked file
/// (the folder opened read-only). Named `PREFIX PID-N.tmp` ([`temp_prefix`]).
pub fn create_temp(
    dir: &Path,
    name: &std::ffi::OsStr,
    folder: bool,
) -> io::Result<(PathBuf, LockedFile)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}{pid}-{n}.tmp", temp_prefix(name)));
        // A folder is made and opened in two steps; between them another
        // writer's stale-temporary cleanup may find it unlocked and remove
        // it (the open then fails with `ENOENT`): start again under a new
        // name, the folder never having held anything of ours.
        let made = if folder {
            match fs::create_dir(&path) {
                Ok(()) => match File::open(&path) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    opened => opened,
                },
                Err(e) => Err(e),
            }
        } else {
            File::options().write(true).create_new(true).open(&path)
        };
        let file = match made {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        // Between the create and the lock another writer may take the new
        // name for stale and remove it: then start again under a new name.
        // Nothing is written into a temporary before it is locked, so what
        // such a cleanup removes is always empty.
        let Ok(locked) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let same = fs::symlink_metadata(&path)
            .ok()
            .zip(locked.metadata().ok())
            .is_some_and(|(a, b)| a.dev() == b.dev() && a.ino() == b.ino());
        if same {
            return Ok((path, locked));
        }
    }
}

/// Is the temporary at `path` stale, its writer gone? It is when no one
/// holds its lock. Returns the lock when so, to be held while it is removed.
///
/// Only a regular file or a folder (not a link to one) can be a writer's
/// temporary; it is opened without blocking, so a FIFO by such a name
/// cannot hold the caller.
pub fn is_stale(path: &Path) -> Option<LockedFile> {
    let t = fs::symlink_metadata(path).ok()?.file_type();
    if !(t.is_file() || t.is_dir()) {
        return None;
    }
    let f = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY | nix::libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Some(l),
        Err((_, Errno::EWOULDBLOCK)) => None,
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = open_regular(&p, "an image file").unwrap_err();
        assert_eq!(e.to_string(), "a FIFO (named pipe), not an image file");
        let e = open_regular(Path::new("/dev/zero"), "an image file").unwrap_err();
        assert!(e.to_string().starts_with("a character device"), "{e}");
        let e = check_output(&p, OutForm::Single).unwrap_err();
        assert!(e.to_string().starts_with("a FIFO"), "{e}");
        let e = check_output(dir.path(), OutForm::Composed).unwrap_err();
        assert!(e.to_string().contains("not a composed image"), "{e}");
        let e = check_output(dir.path(), OutForm::Single).unwrap_err();
        assert!(e.to_string().starts_with("a directory"), "{e}");
        let new = check_output(&dir.path().join("new"), OutForm::Single).unwrap();
        assert!(new.existing.is_none());
    }

    #[test]
    fn a_symlink_is_written_through_and_a_dangling_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("real", &link).unwrap();
        let t = check_output(&link, OutForm::Single).unwrap();
        assert_eq!(t.path, fs::canonicalize(&real).unwrap());
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("nowhere", &dangling).unwrap();
        let e = check_output(&dangling, OutForm::Single).unwrap_err();
        assert!(e.to_string().contains("symbolic link to nowhere"), "{e}");
    }

    #[test]
    fn a_locked_temporary_is_live_and_an_unlocked_one_stale() {
        let dir = tempfile::tempdir().unwrap();
        let (p, lock) = create_temp(dir.path(), "x.image".as_ref(), false).unwrap();
        assert!(p
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".x.image.snapshot-"));
        assert!(is_stale(&p).is_none());
        drop(lock);
        assert!(is_stale(&p).is_some());
        let (d, lock) = create_temp(dir.path(), "x".as_ref(), true).unwrap();
        assert!(d.is_dir() && is_stale(&d).is_none());
        drop(lock);
        assert!(is_stale(&d).is_some());
        // A FIFO or a link by a temporary's name is never taken for one.
        let fifo = dir.path().join(".x.image.snapshot-1-0.tmp");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(is_stale(&fifo).is_none());
        let link = dir.path().join(".x.image.snapshot-1-1.tmp");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(is_stale(&link).is_none());
    }

    #[test]
    fn a_temporary_of_a_long_name_fits_name_max() {
        let dir = tempfile::tempdir().unwrap();
        let name = "é".repeat(127); // 254 bytes
        let (p, _lock) = create_temp(dir.path(), name.as_ref(), false).unwrap();
        assert!(p.file_name().unwrap().len() <= NAME_MAX);
        assert!(temp_prefix(name.as_ref()).starts_with(".é"));
    }
}

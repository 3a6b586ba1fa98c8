//! The tier's private runtime folder, where Pingora's graceful-upgrade socket lives. Whoever
//! binds that socket first receives the listening sockets when the tier hands them over
//! (SIGQUIT): in a world-writable folder under a name made of the tier, its pid and its port,
//! a local script could bind it and answer the tier's clients. The folder is this user's alone
//! (mode 0700, checked), and the socket is named by the tier, so the process that takes over
//! finds it without knowing the old one's pid.
//!
//! The folder's path is resolved once (symbolic links followed) and only the resolved path is
//! used after: a link anywhere in the path as given could be pointed elsewhere later. Every
//! folder above the resolved one must be out of other users' reach too (owned by this user or
//! root, and writable by no one else unless sticky, as `/tmp` is): in a folder anyone may
//! change, ours could be renamed away and another put in its place after the check.
//!
//! Where: `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`), else `$XDG_RUNTIME_DIR/cdn`,
//! else `<temp>/cdn-<uid>`. Two processes of one tier on one host need a folder each. Another
//! user who makes `<temp>/cdn-<uid>` first stops the tier from starting (it refuses the
//! folder): a unit's `RuntimeDirectory=` leaves no such opening.

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The folder, made if missing, checked to be private to this user, as its resolved path.
pub fn private() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("RUNTIME_DIRECTORY") {
        // systemd lists several folders separated by ':' when the unit names several.
        Some(list) => PathBuf::from(list.to_string_lossy().split(':').next().unwrap_or_default()),
        None => match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(base) => Path::new(&base).join("cdn"),
            None => {
                std::env::temp_dir().join(format!("cdn-{}", rustix::process::getuid().as_raw()))
            }
        },
    };
    ensure(&dir)
}

/// Makes `dir` (mode 0700) if it does not exist and resolves it, then refuses it unless it is
/// a folder owned by this user that no one else may enter, below folders no one else may
/// change; returns the resolved path.
fn ensure(dir: &Path) -> Result<PathBuf, String> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            let shown = dir.display();
            return Err(format!("cannot make the runtime folder {shown}: {e}"));
        }
    }
    let real = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve the runtime folder {}: {e}", dir.display()))?;
    let shown = real.display();
    let meta = std::fs::symlink_metadata(&real)
        .map_err(|e| format!("cannot read the runtime folder {shown}: {e}"))?;
    if !meta.file_type().is_dir() {
        return Err(format!("the runtime folder {shown} is not a folder"));
    }
    if meta.uid() != rustix::process::getuid().as_raw() {
        return Err(format!(
            "the runtime folder {shown} belongs to another user: the upgrade socket in it could be taken"
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "the runtime folder {shown} is open to other users (mode {:o}): make it 0700",
            meta.permissions().mode() & 0o777
        ));
    }
    for above in real.ancestors().skip(1) {
        let meta = std::fs::metadata(above)
            .map_err(|e| format!("cannot read {}: {e}", above.display()))?;
        let mode = meta.permissions().mode();
        let owner_ok = meta.uid() == 0 || meta.uid() == rustix::process::getuid().as_raw();
        let sticky = mode & 0o1000 != 0;
        if !owner_ok || (mode & 0o022 != 0 && !sticky) {
            return Err(format!(
                "the runtime folder {shown} is inside {}, which other users may change (owner {}, mode {:o}): the folder could be swapped for theirs",
                above.display(),
                meta.uid(),
                mode & 0o7777
            ));
        }
    }
    Ok(real)
}

/// The graceful-upgrade socket of `tier` in `dir`.
pub fn upgrade_socket(dir: &Path, tier: &str) -> PathBuf {
    dir.join(format!("{tier}.upgrade.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_made_private() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("run");
        ensure(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        ensure(&dir).expect("and taken as it is the next time");
    }

    #[test]
    fn a_folder_others_may_enter_or_a_link_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure(&open).unwrap_err();
        assert!(e.contains("open to other users (mode 777)"), "{e}");

        // A link is followed once and its target judged; the resolved path is what is used,
        // so the link pointed elsewhere later changes nothing (regression: a link above the
        // folder, another user's, was swapped after the check).
        let private = base.path().join("private");
        let real = ensure(&private).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        assert_eq!(ensure(&link).unwrap(), real);
        let to_open = base.path().join("to-open");
        std::os::unix::fs::symlink(&open, &to_open).unwrap();
        assert!(ensure(&to_open)
            .unwrap_err()
            .contains("open to other users"));

        let file = base.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(ensure(&file).is_err());

        // Regression: a private folder inside one anyone may change could be renamed away
        // and replaced after the check; inside a sticky one (as /tmp) it cannot.
        let open_parent = base.path().join("open-parent");
        std::fs::create_dir(&open_parent).unwrap();
        std::fs::set_permissions(&open_parent, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure(&open_parent.join("run")).unwrap_err();
        assert!(e.contains("which other users may change"), "{e}");
        let sticky = base.path().join("sticky");
        std::fs::create_dir(&sticky).unwrap();
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
        ensure(&sticky.join("run")).expect("a sticky folder keeps ours ours");

        if rustix::process::getuid().is_root() {
            let theirs = base.path().join("theirs");
            ensure(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            let e = ensure(&theirs).unwrap_err();
            assert!(e.contains("belongs to another user"), "{e}");
        }
    }

    #[test]
    fn the_socket_is_named_by_the_tier() {
        assert_eq!(
            upgrade_socket(Path::new("/run/cdn"), "edge-pop"),
            Path::new("/run/cdn/edge-pop.upgrade.sock")
        );
    }
}

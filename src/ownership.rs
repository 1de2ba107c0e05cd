//! Who may have written a local file that says what the service does (`.env`, the private
//! cluster's data directory, the `initdb` and `postgres` it runs): only this process's user or
//! root, and no one through a group or an access list, unless that group is the owner's alone.

use std::fs;

/// Why another user may have written an open file or directory that says what the service
/// does, if one may: it belongs to someone other than this process's user or root, or users
/// other than its owner may write to it: others, a group that is not its owner's own private
/// group (Debian's umask of 002 makes files group-writable for that group), or anyone an access
/// list names (under one, the group's bits are the most it grants them).
pub fn not_only_ours(file: &fs::File) -> std::io::Result<Option<String>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let user = unsafe { libc::geteuid() };
    if meta.uid() != user && meta.uid() != 0 {
        let name = user_name(meta.uid()).map_or_else(String::new, |name| format!("{name}, "));
        return Ok(Some(format!(
            "it belongs to another user ({name}uid {})",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Ok(Some(format!("other users may write to it (mode {mode:o})")));
    }
    // SAFETY: a size query (no buffer) on a descriptor we own, with a NUL-terminated name.
    let access_list = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    } >= 0;
    // The owner's private group, or, for a file of root's, this user's (`root:svc`, 0660).
    let private = private_group(meta.uid(), meta.gid())
        || (meta.uid() == 0 && private_group(user, meta.gid()));
    if mode & 0o020 != 0 && (access_list || !private) {
        let whom = if access_list {
            "users its access list names"
        } else {
            "users of its group"
        };
        return Ok(Some(format!("{whom} may write to it (mode {mode:o})")));
    }
    Ok(None)
}

/// Whether `gid` is the private group of user `uid`: its primary group, of the same name, with
/// no other member, and the primary group of no other user in `/etc/passwd`.
fn private_group(uid: u32, gid: u32) -> bool {
    let others = fs::read_to_string("/etc/passwd").is_ok_and(|passwd| {
        passwd.lines().any(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            fields.len() > 3
                && fields[3].parse() == Ok(gid)
                && fields[2].parse::<u32>().is_ok_and(|other| other != uid)
        })
    });
    !others && named_alone(uid, gid)
}

/// Whether `gid` is the primary group of user `uid`, of the same name, with no other member.
fn named_alone(uid: u32, gid: u32) -> bool {
    let Some((user, primary)) = user(uid) else {
        return false;
    };
    if primary != gid {
        return false;
    }
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: the reentrant lookup writes into `buf` and the record we pass, and we read the
    // names before `buf` goes.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut found = std::ptr::null_mut();
        let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
        if libc::getgrgid_r(gid, &mut gr, ptr, len, &mut found) != 0 || found.is_null() {
            return false;
        }
        let mut members = gr.gr_mem;
        while !members.is_null() && !(*members).is_null() {
            if std::ffi::CStr::from_ptr(*members) != user.as_c_str() {
                return false;
            }
            members = members.add(1);
        }
        std::ffi::CStr::from_ptr(gr.gr_name) == user.as_c_str()
    }
}

/// The name of user `uid`, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    user(uid).map(|(name, _)| name.to_string_lossy().into_owned())
}

/// The name and primary group of user `uid`, if it exists.
fn user(uid: u32) -> Option<(std::ffi::CString, u32)> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: the reentrant lookup writes into `buf` and the record we pass, and we copy the
    // name out before `buf` goes.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut found = std::ptr::null_mut();
        let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
        if libc::getpwuid_r(uid, &mut pw, ptr, len, &mut found) != 0 || found.is_null() {
            return None;
        }
        Some((std::ffi::CStr::from_ptr(pw.pw_name).to_owned(), pw.pw_gid))
    }
}

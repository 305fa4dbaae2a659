//! Finding the postgres processes of a data dir through /proc, and signalling them: a
//! manager that died may leave its postmaster running, and PostgreSQL puts each backend in a
//! process group of its own, so the manager's group alone does not reach them.

use std::path::Path;

use nix::sys::signal::Signal;

use crate::process::signal_group;

/// Signals every postgres serving `data_dir`: each postmaster's group first (so it forks
/// nothing new), then each of its children, which PostgreSQL makes leaders of groups of their
/// own. False when no postmaster was found.
pub fn signal_postgres_of(data_dir: &Path, signal: Signal) -> bool {
    let postmasters = postmasters_of(data_dir);
    for postmaster in &postmasters {
        let children = children_of(*postmaster);
        signal_group(*postmaster, signal);
        for child in children {
            signal_group(child, signal);
        }
    }
    !postmasters.is_empty()
}

/// The postmaster's pid from `postmaster.pid`, if that process still leads its own group
/// and is a postgres (so a stale file never makes us signal an unrelated process).
fn postmaster_group(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let _ppid = fields.next()?;
    let pgrp: u32 = fields.next()?.parse().ok()?;
    (comm == "postgres" && pgrp == pid).then_some(pid)
}

/// Every running postmaster of `data_dir`: the one `postmaster.pid` names, and any
/// `postgres -D data_dir` whose command line says so.
fn postmasters_of(data_dir: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = postmaster_group(data_dir).into_iter().collect();
    let wanted = data_dir.as_os_str().as_encoded_bytes();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
            let is_postgres = args
                .first()
                .is_some_and(|program| program.ends_with(b"/postgres"));
            let serves_dir = args
                .windows(2)
                .any(|pair| pair[0] == b"-D" && pair[1] == wanted);
            if is_postgres && serves_dir && !found.contains(&pid) {
                found.push(pid);
            }
        }
    }
    found
}

/// The pids whose parent is `parent`, read from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(parent))
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_pid_file_names_no_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Our own pid is not a postgres.
        std::fs::write(
            dir.path().join("postmaster.pid"),
            format!("{}\n", std::process::id()),
        )
        .expect("write");
        assert_eq!(postmaster_group(dir.path()), None);
        assert_eq!(postmaster_group(Path::new("/nonexistent")), None);
    }

    #[test]
    fn children_are_found_through_proc() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let found = children_of(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            found.contains(&child.id()),
            "{found:?} lacks {}",
            child.id()
        );
        assert_eq!(parent_of(child.id()), None, "reaped");
    }
}

//! Running buildout as a child (not exec: bbrun must outlive it to commit
//! or restore the snapshot), its output shown as it comes and kept for the
//! diagnosis.
//!
//! Signals: Ctrl-C reaches buildout from the terminal (same process
//! group); bbrun ignores it and restores when buildout exits on it.
//! SIGTERM and SIGHUP sent to bbrun are passed on to buildout. If bbrun is
//! killed outright, the kernel kills buildout too (`PR_SET_PDEATHSIG`), and
//! the journal makes the next command restore the tree.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::{Context, Result};

use bbrun_run::launch::LaunchPlan;

/// Output kept for the diagnosis: the end is what matters.
const KEEP: usize = 4 * 1024 * 1024;

static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal asked the run to stop (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT).
static STOPPED: AtomicBool = AtomicBool::new(false);

pub struct Finished {
    pub success: bool,
    /// Exit code, or 128 + signal.
    pub code: i32,
    pub interrupted: bool,
    pub output: String,
}

/// Run `plan` with `extra` arguments inserted before the script's own
/// `args` (the plan's argv ends with them) and `env` added.
pub fn run(
    plan: &LaunchPlan,
    n_args: usize,
    extra: &[OsString],
    env: &[(OsString, OsString)],
) -> Result<Finished> {
    let split = plan.argv.len() - n_args;
    let mut cmd = Command::new(&plan.python);
    cmd.arg0(&plan.argv[0])
        .args(&plan.argv[1..split])
        .args(extra)
        .args(&plan.argv[split..])
        .envs(plan.env.iter().cloned())
        .envs(env.iter().cloned());
    let (reader, writer) = std::io::pipe().context("cannot create a pipe for buildout's output")?;
    let writer2 = writer.try_clone().context("cannot duplicate a pipe")?;
    cmd.stdin(Stdio::inherit())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2));
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{}: cannot execute", plan.python.display()))?;
    // The Command still holds our copies of the pipe's write ends: drop
    // them, so the read below ends when the child (and whatever it started
    // with the same output) has exited.
    drop(cmd);
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let saved = install_handlers();

    let mut kept: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut reader = reader;
    let stdout = std::io::stdout();
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut out = stdout.lock();
                // A closed stdout must not stop buildout: keep reading.
                let _ = out.write_all(&buf[..n]).and_then(|_| out.flush());
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * KEEP {
                    kept.drain(..kept.len() - KEEP);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("waiting for buildout"),
        }
    };
    restore_handlers(saved);
    CHILD.store(0, Ordering::SeqCst);
    let signal = status.signal();
    let code = status.code().unwrap_or(128 + signal.unwrap_or(0));
    let output = String::from_utf8_lossy(&kept).into_owned();
    let interrupted = signal == Some(libc::SIGINT)
        || output
            .lines()
            .rev()
            .take(5)
            .any(|l| l.trim() == "KeyboardInterrupt")
        || signal.is_some();
    Ok(Finished {
        success: status.success(),
        code,
        interrupted,
        output,
    })
}

extern "C" fn forward(sig: libc::c_int) {
    STOPPED.store(true, Ordering::SeqCst);
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 && sig != libc::SIGINT {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

type Saved = Vec<(libc::c_int, libc::sigaction)>;

fn install_handlers() -> Saved {
    let mut saved = Vec::new();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: a plain handler that only calls kill; old actions kept.
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = forward as *const () as usize;
            new.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &new, &mut old) == 0 {
                saved.push((sig, old));
            }
        }
    }
    saved
}

fn restore_handlers(saved: Saved) {
    for (sig, old) in saved {
        // SAFETY: putting back the action sigaction gave us.
        unsafe {
            libc::sigaction(sig, &old, std::ptr::null_mut());
        }
    }
}

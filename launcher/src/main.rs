//! The `bbrun` binary: a thin wrapper around the library so that every
//! command is testable without spawning a process.
//!
//! `no_main`: the launcher runs before every script, and Rust's runtime
//! start-up (`lang_start`) costs it ~30 us of its ~0.35 ms: it reads
//! `/proc/self/maps` to find the main thread's stack guard and maps an
//! alternate signal stack for a stack-overflow message. The two things of
//! it bbrun relies on are done here instead: standard descriptors that are
//! open (so a file bbrun opens never becomes its stdout or stderr), and
//! SIGPIPE ignored (see `cli::stop_quietly_on_closed_stdout`). Arguments
//! still come from `std::env::args_os`, which glibc targets fill in from
//! `.init_array`, before `main`.
// (Not under `cargo test`: the test harness brings its own `main`.)
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use std::ffi::{c_char, c_int};

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    open_standard_descriptors();
    // SAFETY: SIG_IGN installs no handler; this is what Rust's runtime does.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // `exit` flushes stdout, as returning from a Rust `main` would.
    std::process::exit(bbrun::cli::main());
}

/// Put /dev/null on any of fds 0-2 that is closed, as Rust's runtime does.
#[cfg(not(test))]
fn open_standard_descriptors() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd for the whole call.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for pfd in fds {
        if pfd.revents & libc::POLLNVAL != 0 {
            // SAFETY: a NUL-terminated literal path; the lowest free
            // descriptor is the closed one, so the result is left open.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

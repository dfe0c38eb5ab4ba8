//! Ctrl-C: stop the running command, let the fail hooks run, release the lock.
//!
//! The handler only records the interruption and signals the process group of the command that is
//! running (children run in their own process group so a terminal's Ctrl-C reaches them through
//! us, in order). The script engine checks [`should_stop`] between operations; the runner calls
//! [`begin_cleanup`] before running fail hooks so those run to the end.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static CLEANING_UP: AtomicBool = AtomicBool::new(false);
static RUNNING_GROUP: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();

/// Install the SIGINT/SIGTERM handler once per process.
pub fn install() {
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            INTERRUPTED.store(true, Ordering::SeqCst);
            let group = RUNNING_GROUP.load(Ordering::SeqCst);
            if group > 0 && !CLEANING_UP.load(Ordering::SeqCst) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(group),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        });
    });
}

/// Whether the user asked zdd to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Whether new work should stop now: interrupted, and not in the clean-up that follows.
pub fn should_stop() -> bool {
    interrupted() && !CLEANING_UP.load(Ordering::SeqCst)
}

/// From now on, run commands again: fail hooks and unlocking must finish.
pub fn begin_cleanup() {
    CLEANING_UP.store(true, Ordering::SeqCst);
}

/// Reset the state for a new run in the same process.
pub fn reset() {
    INTERRUPTED.store(false, Ordering::SeqCst);
    CLEANING_UP.store(false, Ordering::SeqCst);
}

/// Remember the process group of the command that is running, so Ctrl-C can stop it.
pub fn set_running_group(pid: u32) {
    RUNNING_GROUP.store(pid as i32, Ordering::SeqCst);
}

/// The command ended.
pub fn clear_running_group() {
    RUNNING_GROUP.store(0, Ordering::SeqCst);
}

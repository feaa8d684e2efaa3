//! Freezing an etcd member (`support::freeze`): SIGSTOP keeps its sockets
//! open and its kernel still accepts connections, but nothing answers, as
//! with a frozen VM or a stalled disk. SIGCONT thaws it.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Etcd;

impl Etcd {
    /// Stops the member's process (SIGSTOP) until [`thaw`](Etcd::thaw); the
    /// returned guard thaws it when dropped (a panicking test leaves no
    /// stopped process behind; the fixture's SIGKILL works either way).
    pub fn freeze(&self) -> Frozen {
        let pid = self.pid().expect("a running member to freeze");
        signal(pid, Signal::SIGSTOP);
        Frozen { pid: Some(pid) }
    }
}

/// A frozen member; thawed on [`thaw`](Frozen::thaw) or drop.
#[derive(Debug)]
pub struct Frozen {
    pid: Option<u32>,
}

impl Frozen {
    /// Continues the member (SIGCONT).
    pub fn thaw(mut self) {
        self.thaw_now();
    }

    fn thaw_now(&mut self) {
        if let Some(pid) = self.pid.take() {
            signal(pid, Signal::SIGCONT);
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.thaw_now();
    }
}

fn signal(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
    // The process may have exited already.
    let _ = kill(pid, signal);
}

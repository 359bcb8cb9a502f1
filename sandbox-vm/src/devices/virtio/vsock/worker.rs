//! The device's thread: waits on the listener, the connections' sockets, a kick eventfd (the
//! driver gave rx buffers, or tx work was left over) and a stop eventfd, and runs the muxer.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::muxer::{Muxer, Queues, KICK_TOKEN, LISTENER_TOKEN, STOP_TOKEN};

/// The longest the thread sleeps: deadlines set from the notify path are seen within it.
const MAX_WAIT: Duration = Duration::from_secs(1);
const EVENTS_PER_WAIT: usize = 64;

struct Shared {
    muxer: Mutex<Muxer>,
    epoll: Arc<Epoll>,
    kick: EventFd,
    stop: EventFd,
}

/// A running worker; stopping (or dropping) it joins the thread and closes every connection.
pub struct Worker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker thread. Everything it needs (epoll, eventfds) is made on that
    /// thread: `start` runs on the vCPU thread that activated the device, whose seccomp
    /// filter allows none of it.
    pub fn start(
        guest_cid: u64,
        uds_path: &std::path::Path,
        listener: Arc<UnixListener>,
        queues: Queues,
    ) -> io::Result<Self> {
        let uds_path = uds_path.to_path_buf();
        let (ready, setup) = mpsc::channel();
        let thread =
            crate::confine::workers::spawn_device_worker("vsock", move || {
                match Shared::new(guest_cid, &uds_path, listener, queues) {
                    Ok(shared) => {
                        let shared = Arc::new(shared);
                        let _ = ready.send(Ok(Arc::clone(&shared)));
                        run(&shared);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            })?;
        let shared = setup
            .recv()
            .map_err(|_| io::Error::other("the vsock worker ended during its setup"))??;
        Ok(Worker {
            shared,
            thread: Some(thread),
        })
    }

    /// Makes the thread run a turn.
    pub fn kick(&self) {
        // The counter only saturates after 2^64-2 unread kicks; one pending kick is enough.
        let _ = self.shared.kick.write(1);
    }

    #[cfg(test)]
    pub fn muxer(&self) -> MutexGuard<'_, Muxer> {
        self.shared.lock()
    }
}

impl Shared {
    fn new(
        guest_cid: u64,
        uds_path: &std::path::Path,
        listener: Arc<UnixListener>,
        queues: Queues,
    ) -> io::Result<Shared> {
        let epoll = Arc::new(Epoll::new()?);
        let kick = EventFd::new(EFD_NONBLOCK)?;
        let stop = EventFd::new(EFD_NONBLOCK)?;
        for (fd, token) in [
            (kick.as_raw_fd(), KICK_TOKEN),
            (stop.as_raw_fd(), STOP_TOKEN),
            (listener.as_raw_fd(), LISTENER_TOKEN),
        ] {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, token),
            )?;
        }
        let muxer = Muxer::new(guest_cid, uds_path, listener, epoll.clone(), queues);
        Ok(Shared {
            muxer: Mutex::new(muxer),
            epoll,
            kick,
            stop,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Muxer> {
        self.muxer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.shared.stop.write(1);
        if let Some(thread) = self.thread.take() {
            // A panicked worker has nothing more to clean up.
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared) {
    let mut events = vec![EpollEvent::default(); EVENTS_PER_WAIT];
    loop {
        let wait = shared
            .lock()
            .next_timeout()
            .map_or(MAX_WAIT, |timeout| timeout.min(MAX_WAIT));
        // Round up so a deadline 0.4 ms away is not polled for in a busy loop.
        let timeout_ms = i32::try_from(wait.as_millis() + 1).unwrap_or(i32::MAX);
        let ready = match shared.epoll.wait(timeout_ms, &mut events) {
            Ok(ready) => ready,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            // The epoll fd itself broke: nothing left to wait on.
            Err(_) => return,
        };
        let backlog = {
            let mut muxer = shared.lock();
            for event in &events[..ready] {
                match event.data() {
                    STOP_TOKEN => return,
                    KICK_TOKEN => {
                        let _ = shared.kick.read();
                    }
                    token => muxer.handle_event(token, event.events()),
                }
            }
            muxer.service();
            muxer.tx_backlog
        };
        if backlog {
            let _ = shared.kick.write(1);
        }
    }
}

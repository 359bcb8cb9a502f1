//! The device's state once active: the queues, every connection keyed by
//! `(host port, guest port)`, the host clients still sending their `CONNECT` line, and the RSTs
//! owed to the guest. Both the notify path and the worker drive it, under one mutex.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::connection::{rst_header, Connection, RxPacket, State, Verdict};
use super::packet::{op, read_tx, Header, RxBuffer, TxPacket, HOST_CID, TYPE_STREAM};
use super::{RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::{Interrupt, MAX_CHAINS_PER_NOTIFY};
use crate::dma::DmaMemory;

/// Most open connections (both directions together); more are refused with RST / a closed
/// client socket.
pub const MAX_CONNECTIONS: usize = 128;
/// Most accepted host clients that have not finished their `CONNECT` line.
const MAX_PENDING_CLIENTS: usize = 16;
/// Longest `CONNECT <port>` line, newline excluded.
const MAX_CONNECT_LINE: usize = 32;
/// Most RSTs waiting for rx buffers; beyond it a flooding guest loses its own RSTs.
const MAX_PENDING_RSTS: usize = 1024;
/// Clients accepted per listener wake-up, so a connect storm cannot starve the queues.
const MAX_ACCEPTS_PER_EVENT: usize = 16;
/// How long the guest has to answer a REQUEST, a SHUTDOWN, and a client to send its line.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the listener rests after accept(2) failed for lack of resources.
const LISTENER_PAUSE: Duration = Duration::from_millis(100);
/// First host port handed to host-initiated connections (high, away from guest-chosen ports).
const FIRST_LOCAL_PORT: u32 = 1 << 30;

/// epoll tokens of the fixed descriptors; connections and clients get tokens from
/// `FIRST_DYNAMIC_TOKEN` up.
pub const KICK_TOKEN: u64 = 0;
pub const STOP_TOKEN: u64 = 1;
pub const LISTENER_TOKEN: u64 = 2;
const FIRST_DYNAMIC_TOKEN: u64 = 16;

type ConnKey = (u32, u32);

enum Slot {
    Conn(ConnKey),
    Client,
}

/// A host client that connected to the listener and is still sending `CONNECT <port>\n`.
struct PendingClient {
    stream: UnixStream,
    line: Vec<u8>,
    deadline: Instant,
}

/// The queues and where they live, as handed over at activation.
pub struct Queues {
    pub memory: DmaMemory,
    pub rx: Queue,
    pub tx: Queue,
    pub interrupt: Arc<dyn Interrupt>,
}

pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: Arc<UnixListener>,
    epoll: Arc<Epoll>,
    queues: Queues,
    conns: HashMap<ConnKey, Connection>,
    clients: HashMap<u64, PendingClient>,
    tokens: HashMap<u64, Slot>,
    rsts: VecDeque<Header>,
    next_token: u64,
    next_local_port: u32,
    /// The connection served last on the rx queue: the next turn starts after it (fairness).
    last_served: ConnKey,
    /// The tx queue had more chains than one turn may take.
    pub tx_backlog: bool,
    /// accept(2) failed for lack of resources (EMFILE...): the listener is out of epoll until
    /// then, since a listener that stays readable would spin the worker.
    listener_paused_until: Option<Instant>,
}

impl Muxer {
    pub fn new(
        guest_cid: u64,
        uds_path: &Path,
        listener: Arc<UnixListener>,
        epoll: Arc<Epoll>,
        queues: Queues,
    ) -> Self {
        Muxer {
            guest_cid,
            uds_path: uds_path.to_path_buf(),
            listener,
            epoll,
            queues,
            conns: HashMap::new(),
            clients: HashMap::new(),
            tokens: HashMap::new(),
            rsts: VecDeque::new(),
            next_token: FIRST_DYNAMIC_TOKEN,
            next_local_port: FIRST_LOCAL_PORT,
            last_served: (0, 0),
            tx_backlog: false,
            listener_paused_until: None,
        }
    }

    /// One bounded turn: guest packets, timeouts, rx buffers, then the epoll interests that
    /// follow from the new state.
    pub fn service(&mut self) {
        self.resume_listener();
        self.process_tx();
        self.expire(Instant::now());
        self.fill_rx();
        self.update_interests();
    }

    /// Time until the next deadline (for epoll_wait), `None` when nothing waits.
    pub fn next_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        self.conns
            .values()
            .filter_map(|conn| conn.deadline)
            .chain(self.clients.values().map(|client| client.deadline))
            .chain(self.listener_paused_until)
            .min()
            .map(|deadline| deadline.saturating_duration_since(now))
    }

    /// An epoll event on a dynamic token.
    pub fn handle_event(&mut self, token: u64, events: u32) {
        match self.tokens.get(&token) {
            Some(Slot::Conn(key)) => {
                let key = *key;
                self.handle_conn_event(key, events);
            }
            Some(Slot::Client) => self.handle_client_event(token),
            None if token == LISTENER_TOKEN => self.accept_clients(),
            None => {}
        }
    }

    fn handle_conn_event(&mut self, key: ConnKey, events: u32) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let hang_up = (EventSet::HANG_UP | EventSet::ERROR).bits();
        if events & hang_up != 0 {
            conn.host_hung_up = true;
        }
        let mut verdict = Verdict::Keep;
        if events & EventSet::OUT.bits() != 0 {
            verdict = conn.flush_to_host();
        }
        if verdict == Verdict::Keep
            && events & (EventSet::IN.bits() | hang_up) != 0
            && conn.wants_read()
        {
            verdict = conn.read_from_host();
        }
        if verdict == Verdict::Reset {
            self.reset_conn(key);
        }
    }

    /// Takes the guest's tx packets, at most `MAX_CHAINS_PER_NOTIFY` of them.
    fn process_tx(&mut self) {
        let memory = self.queues.memory.clone();
        let mut taken = 0;
        self.tx_backlog = false;
        while taken < MAX_CHAINS_PER_NOTIFY {
            let Some(chain) = self.queues.tx.pop_descriptor_chain(&memory) else {
                break;
            };
            let head = chain.head_index();
            let packet = read_tx(&memory, chain);
            // The device writes nothing into tx buffers. A head index outside the ring fails
            // here too; there is nothing better to do with it than go on.
            let _ = self.queues.tx.add_used(&memory, head, 0);
            taken += 1;
            // Malformed chains are dropped: without a readable header there is no one to answer.
            if let Ok(packet) = packet {
                self.handle_guest_packet(packet);
            }
        }
        if taken == MAX_CHAINS_PER_NOTIFY {
            self.tx_backlog = true;
        }
        if taken > 0 {
            self.notify(TX_QUEUE);
        }
    }

    fn handle_guest_packet(&mut self, packet: TxPacket) {
        let header = packet.header;
        // Only packets from this guest to the host are ours; others are not answered, since the
        // RST would go to an address that is not the guest's.
        if header.dst_cid != HOST_CID || header.src_cid != self.guest_cid {
            return;
        }
        let key = (header.dst_port, header.src_port);
        if header.type_ != TYPE_STREAM {
            self.push_rst(key);
            return;
        }
        if header.op == op::RST {
            self.drop_conn(key);
            return;
        }
        if header.op == op::REQUEST {
            self.guest_connect(&header);
            return;
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            self.push_rst(key);
            return;
        };
        conn.update_peer_credit(&header);
        let verdict = match header.op {
            op::RESPONSE if conn.state == State::AwaitingResponse => {
                conn.established_by_guest(&header)
            }
            op::RW => conn.write_from_guest(&packet.payload),
            op::SHUTDOWN => conn.shutdown_by_guest(header.flags),
            op::CREDIT_UPDATE => Verdict::Keep,
            op::CREDIT_REQUEST => {
                conn.credit_requested_by_guest();
                Verdict::Keep
            }
            // A RESPONSE out of turn, or an op this protocol does not have.
            _ => Verdict::Reset,
        };
        if verdict == Verdict::Reset {
            self.reset_conn(key);
        }
    }

    /// The guest connects to host port P: connect to `<uds_path>_P`, RESPONSE or RST.
    fn guest_connect(&mut self, request: &Header) {
        let key = (request.dst_port, request.src_port);
        if self.conns.contains_key(&key) {
            // A second REQUEST on a live connection: the guest lost track; start over clean.
            self.reset_conn(key);
            return;
        }
        if self.conns.len() >= MAX_CONNECTIONS {
            self.push_rst(key);
            return;
        }
        let mut path: OsString = self.uds_path.clone().into_os_string();
        path.push(format!("_{}", request.dst_port));
        match connect_nonblocking(Path::new(&path)) {
            Ok(stream) => {
                let token = self.new_token();
                self.tokens.insert(token, Slot::Conn(key));
                self.conns
                    .insert(key, Connection::accepted(stream, token, request));
            }
            Err(_) => self.push_rst(key),
        }
    }

    fn accept_clients(&mut self) {
        for _ in 0..MAX_ACCEPTS_PER_EVENT {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                // EMFILE and the like: the client waits in the backlog for a later turn.
                Err(_) => {
                    let paused = self.epoll.ctl(
                        ControlOperation::Delete,
                        self.listener.as_raw_fd(),
                        EpollEvent::default(),
                    );
                    if paused.is_ok() {
                        self.listener_paused_until = Some(Instant::now() + LISTENER_PAUSE);
                    }
                    return;
                }
            };
            if self.clients.len() >= MAX_PENDING_CLIENTS || stream.set_nonblocking(true).is_err() {
                continue; // Dropping the stream closes it: the client sees EOF.
            }
            let token = self.new_token();
            let registered = self.epoll.ctl(
                ControlOperation::Add,
                stream.as_raw_fd(),
                EpollEvent::new(EventSet::IN, token),
            );
            if registered.is_err() {
                continue;
            }
            self.tokens.insert(token, Slot::Client);
            self.clients.insert(
                token,
                PendingClient {
                    stream,
                    line: Vec::new(),
                    deadline: Instant::now() + HANDSHAKE_TIMEOUT,
                },
            );
        }
    }

    /// Reads the client's line one byte at a time so that no byte after the newline (the start
    /// of its payload) is taken before the connection exists.
    fn handle_client_event(&mut self, token: u64) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        loop {
            let mut byte = [0u8; 1];
            match (&client.stream).read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) if client.line.len() < MAX_CONNECT_LINE => client.line.push(byte[0]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // EOF, an overlong line or a socket error: the client is not one.
                _ => {
                    self.drop_client(token);
                    return;
                }
            }
        }
        let port = parse_connect_line(&client.line);
        let Some(client) = self.clients.remove(&token) else {
            return;
        };
        match port {
            Some(port) if self.conns.len() < MAX_CONNECTIONS => {
                self.host_connect(client.stream, token, port)
            }
            _ => self.forget_token(token, &client.stream, true),
        }
    }

    /// A host client asked for guest port `peer_port`: send the guest a REQUEST.
    fn host_connect(&mut self, stream: UnixStream, token: u64, peer_port: u32) {
        let local_port = self.new_local_port();
        let key = (local_port, peer_port);
        let mut conn = Connection::requested(
            stream,
            token,
            local_port,
            peer_port,
            self.guest_cid,
            Instant::now() + HANDSHAKE_TIMEOUT,
        );
        // The client's stream stays registered under its token, now for the connection.
        conn.interest = Some(EventSet::IN.bits());
        self.tokens.insert(token, Slot::Conn(key));
        self.conns.insert(key, conn);
    }

    fn resume_listener(&mut self) {
        if self
            .listener_paused_until
            .is_some_and(|until| until <= Instant::now())
        {
            let resumed = self.epoll.ctl(
                ControlOperation::Add,
                self.listener.as_raw_fd(),
                EpollEvent::new(EventSet::IN, LISTENER_TOKEN),
            );
            if resumed.is_ok() {
                self.listener_paused_until = None;
            }
        }
    }

    fn new_local_port(&mut self) -> u32 {
        loop {
            let port = self.next_local_port;
            self.next_local_port = port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            // At most MAX_CONNECTIONS ports are taken, so this ends quickly.
            if !self.conns.keys().any(|(local, _)| *local == port) {
                return port;
            }
        }
    }

    fn new_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    /// Gives up on handshakes and closes that took too long.
    fn expire(&mut self, now: Instant) {
        let late: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.deadline.is_some_and(|deadline| deadline <= now))
            .map(|(key, _)| *key)
            .collect();
        for key in late {
            self.reset_conn(key);
        }
        let late: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, client)| client.deadline <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in late {
            self.drop_client(token);
        }
    }

    /// Fills rx buffers the driver gave with owed packets, at most `MAX_CHAINS_PER_NOTIFY`.
    fn fill_rx(&mut self) {
        let memory = self.queues.memory.clone();
        let mut used = 0;
        while used < MAX_CHAINS_PER_NOTIFY && self.has_rx_work() {
            let Some(chain) = self.queues.rx.pop_descriptor_chain(&memory) else {
                break;
            };
            let head = chain.head_index();
            let written = match RxBuffer::new(&memory, chain) {
                // A buffer too small for a header (or outside memory) goes back empty.
                None => 0,
                Some(buffer) => match self.next_rx_packet(buffer.payload_room()) {
                    Some(packet) => self.deliver(buffer, packet),
                    None => {
                        // Nothing fits this buffer; keep it for later.
                        self.queues.rx.go_to_previous_position();
                        break;
                    }
                },
            };
            let _ = self.queues.rx.add_used(&memory, head, written);
            used += 1;
        }
        if used > 0 {
            self.notify(RX_QUEUE);
        }
    }

    fn deliver<B: vm_memory::bitmap::BitmapSlice>(
        &mut self,
        buffer: RxBuffer<'_, B>,
        packet: RxPacket,
    ) -> u32 {
        let header = packet.header;
        match buffer.fill(header, &packet.payload) {
            Ok(written) => written,
            Err(_) => {
                // The packet is lost (the guest made its buffer unwritable): the stream cannot
                // go on without a gap, so it ends.
                if header.op != op::RST {
                    self.reset_conn((header.src_port, header.dst_port));
                }
                0
            }
        }
    }

    fn has_rx_work(&self) -> bool {
        !self.rsts.is_empty() || self.conns.values().any(Connection::has_rx_work)
    }

    /// RSTs first, then one packet from the next connection after the last one served.
    fn next_rx_packet(&mut self, room: usize) -> Option<RxPacket> {
        if let Some(header) = self.rsts.pop_front() {
            return Some(RxPacket {
                header,
                payload: Vec::new(),
            });
        }
        let mut keys: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.has_rx_work())
            .map(|(key, _)| *key)
            .collect();
        keys.sort_unstable();
        let start = keys.partition_point(|key| *key <= self.last_served);
        let closing_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        for key in keys[start..].iter().chain(&keys[..start]) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if let Some(packet) = conn.next_rx_packet(room, closing_deadline) {
                self.last_served = *key;
                return Some(packet);
            }
        }
        None
    }

    /// Registers each host socket for what its connection can use now: reading only while
    /// the guest has credit (so host data is never buffered beyond it), writing only while
    /// guest data waits.
    fn update_interests(&mut self) {
        for conn in self.conns.values_mut() {
            let mut events = EventSet::empty();
            if conn.wants_read() {
                events |= EventSet::IN;
            }
            if conn.wants_write() {
                events |= EventSet::OUT;
            }
            // epoll always reports a hang-up; a hung-up socket nobody reads would spin.
            let wanted = (!events.is_empty() || !conn.host_hung_up).then_some(events.bits());
            if wanted == conn.interest {
                continue;
            }
            let fd = conn.stream.as_raw_fd();
            let event = EpollEvent::new(events, conn.token);
            let result = match (conn.interest, wanted) {
                (None, Some(_)) => self.epoll.ctl(ControlOperation::Add, fd, event),
                (Some(_), Some(_)) => self.epoll.ctl(ControlOperation::Modify, fd, event),
                (Some(_), None) => self.epoll.ctl(ControlOperation::Delete, fd, event),
                (None, None) => Ok(()),
            };
            if result.is_ok() {
                conn.interest = wanted;
            }
        }
    }

    fn notify(&mut self, queue: u16) {
        let ring = if queue == RX_QUEUE {
            &mut self.queues.rx
        } else {
            &mut self.queues.tx
        };
        // Without EVENT_IDX this only honours VRING_AVAIL_F_NO_INTERRUPT; on a ring the guest
        // broke, interrupting is the safe side.
        if ring.needs_notification(&self.queues.memory).unwrap_or(true) {
            // A failing interrupt line is the transport's to report; the used ring is
            // already updated, so the next interrupt delivers these buffers too.
            let _ = self.queues.interrupt.notify_queue(queue);
        }
    }

    /// Ends a connection and tells the guest.
    fn reset_conn(&mut self, key: ConnKey) {
        self.drop_conn(key);
        self.push_rst(key);
    }

    /// Ends a connection without telling the guest (it reset it itself).
    fn drop_conn(&mut self, key: ConnKey) {
        if let Some(conn) = self.conns.remove(&key) {
            self.forget_token(conn.token, &conn.stream, conn.interest.is_some());
        }
    }

    fn drop_client(&mut self, token: u64) {
        if let Some(client) = self.clients.remove(&token) {
            self.forget_token(token, &client.stream, true);
        }
    }

    fn forget_token(&mut self, token: u64, stream: &UnixStream, registered: bool) {
        self.tokens.remove(&token);
        if registered {
            // Closing the stream right after removes it from epoll anyway.
            let _ = self.epoll.ctl(
                ControlOperation::Delete,
                stream.as_raw_fd(),
                EpollEvent::default(),
            );
        }
    }

    fn push_rst(&mut self, (local_port, peer_port): ConnKey) {
        if self.rsts.len() < MAX_PENDING_RSTS {
            self.rsts
                .push_back(rst_header(self.guest_cid, local_port, peer_port));
        }
    }

    #[cfg(test)]
    pub fn connection(&self, local_port: u32, peer_port: u32) -> Option<&Connection> {
        self.conns.get(&(local_port, peer_port))
    }
}

/// `CONNECT <port>` (a trailing `\r` tolerated) → the port.
fn parse_connect_line(line: &[u8]) -> Option<u32> {
    let line = std::str::from_utf8(line).ok()?;
    let port = line.trim_end_matches('\r').strip_prefix("CONNECT ")?;
    port.trim().parse().ok()
}

/// Connects without blocking: a Unix listener with a full backlog makes connect(2) block, and
/// this runs on the vCPU thread. A full backlog then counts as refused.
fn connect_nonblocking(path: &Path) -> nix::Result<UnixStream> {
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let address = UnixAddr::new(path)?;
    connect(fd.as_raw_fd(), &address)?;
    Ok(UnixStream::from(fd))
}

#[cfg(test)]
mod tests {
    use super::parse_connect_line;

    #[test]
    fn connect_line_parses_only_a_port() {
        assert_eq!(parse_connect_line(b"CONNECT 52"), Some(52));
        assert_eq!(parse_connect_line(b"CONNECT 4294967295\r"), Some(u32::MAX));
        assert_eq!(parse_connect_line(b"CONNECT 4294967296"), None);
        assert_eq!(parse_connect_line(b"CONNECT"), None);
        assert_eq!(parse_connect_line(b"connect 5"), None);
        assert_eq!(parse_connect_line(b"CONNECT -1"), None);
        assert_eq!(parse_connect_line(&[0xff, 0xfe]), None);
    }
}

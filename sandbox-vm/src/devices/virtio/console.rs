//! virtio-console (virtio 1.x spec 5.3) with one port and no multiport: queue 0 (receiveq)
//! carries host input to the guest, queue 1 (transmitq) guest output to a host sink.
//!
//! Host input arrives through [`ConsoleInput`], a handle any thread may hold: bytes wait in a
//! bounded buffer and go into the guest's receive buffers at once if it has some, otherwise
//! when the driver next notifies queue 0. All device state sits behind one mutex so the
//! vCPU thread (notifications) and an input thread can both drive it.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use virtio_queue::{Queue, QueueOwnedT, QueueT, Reader, Writer};

use super::{
    device_id, Activation, DeviceError, Interrupt, VirtioDevice, MAX_CHAINS_PER_NOTIFY,
    VIRTIO_F_VERSION_1,
};
use crate::dma::DmaMemory;

/// VIRTIO_CONSOLE_F_SIZE: `cols` and `rows` in config are valid.
pub const VIRTIO_CONSOLE_F_SIZE: u32 = 0;
/// VIRTIO_CONSOLE_F_EMERG_WRITE: the driver may write single characters to `emerg_wr`.
pub const VIRTIO_CONSOLE_F_EMERG_WRITE: u32 = 2;

/// Size of each of the two queues.
pub const QUEUE_SIZE: u16 = 64;
/// Most host input bytes held while the guest has no receive buffers; more is refused.
pub const MAX_PENDING_INPUT: usize = 64 * 1024;
/// Most output bytes taken from one transmit chain; the rest is dropped (a driver sends at
/// most a few pages per buffer), so one chain cannot stall the exit loop on a slow sink.
pub const MAX_OUTPUT_PER_CHAIN: usize = 1024 * 1024;

const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;
/// Config space: cols (u16) at 0, rows (u16) at 2, max_nr_ports (u32) at 4, emerg_wr (u32)
/// at 8.
const CONFIG_LEN: usize = 12;
const EMERG_WR_OFFSET: u64 = 8;
/// Copy unit from transmit buffers to the sink.
const COPY_CHUNK: usize = 4096;
/// How long the input pump waits for the guest to drain a full input buffer before retrying.
const PUMP_RETRY: Duration = Duration::from_millis(10);

struct Active {
    memory: DmaMemory,
    receive: Queue,
    transmit: Queue,
    interrupt: Arc<dyn Interrupt>,
}

struct ConsoleState {
    sink: Box<dyn Write + Send>,
    pending_input: VecDeque<u8>,
    size: Option<(u16, u16)>,
    acked_features: u64,
    active: Option<Active>,
    error_count: u64,
    last_error: Option<String>,
}

/// A virtio-console device with one port.
pub struct Console {
    state: Arc<Mutex<ConsoleState>>,
}

/// A handle that feeds host input to a [`Console`] from any thread.
#[derive(Clone)]
pub struct ConsoleInput {
    state: Weak<Mutex<ConsoleState>>,
}

fn lock(state: &Mutex<ConsoleState>) -> MutexGuard<'_, ConsoleState> {
    // A panic elsewhere while holding the lock leaves plain buffers behind: still usable.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Console {
    /// A console whose guest output goes to `sink`. `size` (columns, rows) is offered to the
    /// guest with VIRTIO_CONSOLE_F_SIZE when given.
    pub fn new(sink: Box<dyn Write + Send>, size: Option<(u16, u16)>) -> Self {
        Self {
            state: Arc::new(Mutex::new(ConsoleState {
                sink,
                pending_input: VecDeque::new(),
                size,
                acked_features: 0,
                active: None,
                error_count: 0,
                last_error: None,
            })),
        }
    }

    /// A handle for pushing host input, e.g. from a thread reading a pty.
    pub fn input(&self) -> ConsoleInput {
        ConsoleInput {
            state: Arc::downgrade(&self.state),
        }
    }

    /// Queues host input for the guest; returns how many bytes were taken (fewer than given
    /// when [`MAX_PENDING_INPUT`] bytes already wait).
    pub fn push_input(&self, bytes: &[u8]) -> usize {
        lock(&self.state).push_input(bytes)
    }

    /// Host input not yet given to the guest, in bytes.
    pub fn pending_input(&self) -> usize {
        lock(&self.state).pending_input.len()
    }

    /// Changes the console size the guest sees; tells the driver when it accepted
    /// VIRTIO_CONSOLE_F_SIZE. Ignored when the console was made without a size.
    pub fn set_size(&self, cols: u16, rows: u16) {
        let mut state = lock(&self.state);
        if state.size.is_none() {
            return;
        }
        state.size = Some((cols, rows));
        if state.acked_features & (1 << VIRTIO_CONSOLE_F_SIZE) == 0 {
            return;
        }
        let result = state
            .active
            .as_ref()
            .map(|active| active.interrupt.notify_config());
        if let Some(Err(error)) = result {
            state.record(error);
        }
    }

    /// How many device errors (malformed chains, queue or sink failures) happened so far.
    pub fn error_count(&self) -> u64 {
        lock(&self.state).error_count
    }

    /// The most recent device error, for diagnostics.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.state).last_error.clone()
    }
}

impl ConsoleInput {
    /// Like [`Console::push_input`]; takes nothing once the console is gone.
    pub fn push(&self, bytes: &[u8]) -> usize {
        match self.state.upgrade() {
            Some(state) => lock(&state).push_input(bytes),
            None => 0,
        }
    }

    /// Starts a thread that copies `source` into the console until `source` ends or fails or
    /// the console is dropped. While the input buffer is full it waits for the guest.
    pub fn pump_from(
        self,
        mut source: Box<dyn Read + Send>,
    ) -> std::io::Result<JoinHandle<std::io::Result<()>>> {
        std::thread::Builder::new()
            .name("virtio-console-input".into())
            .spawn(move || {
                let mut buf = [0u8; COPY_CHUNK];
                loop {
                    let n = match source.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    let mut rest = &buf[..n];
                    while !rest.is_empty() {
                        if self.state.strong_count() == 0 {
                            return Ok(());
                        }
                        let taken = self.push(rest);
                        rest = &rest[taken..];
                        if taken == 0 {
                            std::thread::sleep(PUMP_RETRY);
                        }
                    }
                }
            })
    }
}

impl ConsoleState {
    fn record(&mut self, error: DeviceError) {
        self.error_count += 1;
        self.last_error = Some(error.to_string());
    }

    fn push_input(&mut self, bytes: &[u8]) -> usize {
        let room = MAX_PENDING_INPUT.saturating_sub(self.pending_input.len());
        let taken = bytes.len().min(room);
        self.pending_input.extend(&bytes[..taken]);
        self.deliver_input();
        taken
    }

    /// Fills the guest's receive buffers from the pending input, one chain at a time.
    fn deliver_input(&mut self) {
        let ConsoleState {
            pending_input,
            active,
            ..
        } = self;
        let Some(active) = active.as_mut() else {
            return;
        };
        let mut errors = Vec::new();
        let mut used_any = false;
        for _ in 0..MAX_CHAINS_PER_NOTIFY {
            if pending_input.is_empty() {
                break;
            }
            let chain = match active.receive.iter(&active.memory) {
                Ok(mut chains) => chains.next(),
                Err(source) => {
                    errors.push(DeviceError::Queue {
                        queue: RECEIVE_QUEUE,
                        source,
                    });
                    break;
                }
            };
            let Some(chain) = chain else { break };
            let head = chain.head_index();
            let written = match Writer::new(&active.memory, chain) {
                Ok(mut writer) => {
                    let n = writer.available_bytes().min(pending_input.len());
                    if n == 0 {
                        errors.push(DeviceError::BadChain {
                            queue: RECEIVE_QUEUE,
                            detail: "receive buffer has no device-writable bytes".into(),
                        });
                    }
                    let (front, back) = pending_input.as_slices();
                    let from_front = n.min(front.len());
                    let result = writer
                        .write_all(&front[..from_front])
                        .and_then(|()| writer.write_all(&back[..n - from_front]));
                    if let Err(source) = result {
                        errors.push(DeviceError::Io {
                            what: "virtio-console copy into receive buffers".into(),
                            source,
                        });
                    }
                    // Only what reached the guest leaves the pending input.
                    let written = writer.bytes_written();
                    pending_input.drain(..written);
                    written
                }
                Err(source) => {
                    errors.push(DeviceError::Queue {
                        queue: RECEIVE_QUEUE,
                        source,
                    });
                    0
                }
            };
            // At most MAX_PENDING_INPUT bytes, so the length fits.
            let written = u32::try_from(written).unwrap_or(u32::MAX);
            match active.receive.add_used(&active.memory, head, written) {
                Ok(()) => used_any = true,
                Err(source) => errors.push(DeviceError::Queue {
                    queue: RECEIVE_QUEUE,
                    source,
                }),
            }
        }
        if used_any {
            if let Err(error) = notify(active, RECEIVE_QUEUE) {
                errors.push(error);
            }
        }
        for error in errors {
            self.record(error);
        }
    }

    /// Writes the guest's transmit buffers to the sink and returns them.
    fn drain_output(&mut self) {
        let ConsoleState { sink, active, .. } = self;
        let Some(active) = active.as_mut() else {
            return;
        };
        let mut errors = Vec::new();
        let mut used_any = false;
        for _ in 0..MAX_CHAINS_PER_NOTIFY {
            let chain = match active.transmit.iter(&active.memory) {
                Ok(mut chains) => chains.next(),
                Err(source) => {
                    errors.push(DeviceError::Queue {
                        queue: TRANSMIT_QUEUE,
                        source,
                    });
                    break;
                }
            };
            let Some(chain) = chain else { break };
            let head = chain.head_index();
            match Reader::new(&active.memory, chain) {
                Ok(reader) => {
                    if let Err(error) = copy_to_sink(reader, sink.as_mut()) {
                        errors.push(error);
                    }
                }
                Err(source) => errors.push(DeviceError::Queue {
                    queue: TRANSMIT_QUEUE,
                    source,
                }),
            }
            // The device writes nothing into transmit buffers.
            match active.transmit.add_used(&active.memory, head, 0) {
                Ok(()) => used_any = true,
                Err(source) => errors.push(DeviceError::Queue {
                    queue: TRANSMIT_QUEUE,
                    source,
                }),
            }
        }
        if let Err(source) = sink.flush() {
            errors.push(DeviceError::Io {
                what: "virtio-console output sink flush".into(),
                source,
            });
        }
        if used_any {
            if let Err(error) = notify(active, TRANSMIT_QUEUE) {
                errors.push(error);
            }
        }
        for error in errors {
            self.record(error);
        }
    }

    fn config_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut config = [0u8; CONFIG_LEN];
        let (cols, rows) = self.size.unwrap_or((0, 0));
        config[0..2].copy_from_slice(&cols.to_le_bytes());
        config[2..4].copy_from_slice(&rows.to_le_bytes());
        // max_nr_ports is only valid with VIRTIO_CONSOLE_F_MULTIPORT; one port regardless.
        config[4..8].copy_from_slice(&1u32.to_le_bytes());
        config
    }
}

/// Copies at most [`MAX_OUTPUT_PER_CHAIN`] bytes of one transmit chain to the sink.
fn copy_to_sink(mut reader: Reader<'_>, sink: &mut dyn Write) -> Result<(), DeviceError> {
    let mut chunk = [0u8; COPY_CHUNK];
    let mut copied = 0usize;
    while copied < MAX_OUTPUT_PER_CHAIN {
        let want = (MAX_OUTPUT_PER_CHAIN - copied).min(COPY_CHUNK);
        let n = reader
            .read(&mut chunk[..want])
            .map_err(|source| DeviceError::Io {
                what: "virtio-console copy from transmit buffers".into(),
                source,
            })?;
        if n == 0 {
            return Ok(());
        }
        sink.write_all(&chunk[..n])
            .map_err(|source| DeviceError::Io {
                what: "virtio-console output sink".into(),
                source,
            })?;
        copied += n;
    }
    if reader.available_bytes() > 0 {
        return Err(DeviceError::BadChain {
            queue: TRANSMIT_QUEUE,
            detail: format!(
                "transmit buffer over {MAX_OUTPUT_PER_CHAIN} bytes: {} bytes dropped",
                reader.available_bytes()
            ),
        });
    }
    Ok(())
}

fn notify(active: &mut Active, queue: u16) -> Result<(), DeviceError> {
    let target = if queue == RECEIVE_QUEUE {
        &mut active.receive
    } else {
        &mut active.transmit
    };
    match target.needs_notification(&active.memory) {
        Ok(true) => active.interrupt.notify_queue(queue),
        Ok(false) => Ok(()),
        Err(source) => Err(DeviceError::Queue { queue, source }),
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        device_id::CONSOLE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn offered_features(&self) -> u64 {
        let mut features = VIRTIO_F_VERSION_1 | 1 << VIRTIO_CONSOLE_F_EMERG_WRITE;
        if lock(&self.state).size.is_some() {
            features |= 1 << VIRTIO_CONSOLE_F_SIZE;
        }
        features
    }

    fn ack_features(&mut self, features: u64) {
        let offered = self.offered_features();
        lock(&self.state).acked_features = features & offered;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = lock(&self.state).config_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = offset
                .checked_add(i as u64)
                .and_then(|at| usize::try_from(at).ok())
                .and_then(|at| config.get(at).copied())
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // emerg_wr is the only writable field: its low byte is one character of output.
        if offset != EMERG_WR_OFFSET {
            return;
        }
        let mut state = lock(&self.state);
        if state.acked_features & (1 << VIRTIO_CONSOLE_F_EMERG_WRITE) == 0 {
            return;
        }
        let Some(&character) = data.first() else {
            return;
        };
        let result = state
            .sink
            .write_all(&[character])
            .and_then(|()| state.sink.flush());
        if let Err(source) = result {
            state.record(DeviceError::Io {
                what: "virtio-console emergency write".into(),
                source,
            });
        }
    }

    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        let mut queues = activation.queues.into_iter();
        let (Some(receive), Some(transmit)) = (queues.next(), queues.next()) else {
            return Err(DeviceError::Activate(
                "virtio-console needs its receive and transmit queues".into(),
            ));
        };
        for (index, queue) in [(RECEIVE_QUEUE, &receive), (TRANSMIT_QUEUE, &transmit)] {
            if !queue.is_valid(&activation.memory) {
                return Err(DeviceError::Activate(format!(
                    "virtio-console queue {index} is not enabled or its rings are outside the device's memory"
                )));
            }
        }
        let mut state = lock(&self.state);
        state.active = Some(Active {
            memory: activation.memory,
            receive,
            transmit,
            interrupt: activation.interrupt,
        });
        // Input typed before the driver came up goes out as soon as there are buffers.
        state.deliver_input();
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) {
        let mut state = lock(&self.state);
        match queue {
            RECEIVE_QUEUE => state.deliver_input(),
            TRANSMIT_QUEUE => state.drain_output(),
            _ => state.record(DeviceError::BadChain {
                queue,
                detail: "virtio-console without multiport has only queues 0 and 1".into(),
            }),
        }
    }

    fn reset(&mut self) {
        let mut state = lock(&self.state);
        state.active = None;
        state.acked_features = 0;
    }
}

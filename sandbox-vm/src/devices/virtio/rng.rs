//! virtio-rng (virtio spec 5.4): one request queue whose device-writable buffers the device
//! fills with bytes from the host's getrandom(2). No configuration space, no feature bits
//! beyond VERSION_1.
//!
//! Work per notification is bounded: at most [`MAX_CHAINS_PER_NOTIFY`] chains, and at most
//! [`MAX_BYTES_PER_CHAIN`] bytes into each (a driver asking for more gets a short answer, which
//! the spec allows: the used length says how much was written).

use std::sync::Arc;

use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::Bytes;

use super::{
    device_id, Activation, DeviceError, Interrupt, VirtioDevice, MAX_CHAINS_PER_NOTIFY,
    VIRTIO_F_VERSION_1,
};
use crate::dma::DmaMemory;

/// Size of the request queue.
pub const RNG_QUEUE_SIZE: u16 = 256;
/// Most random bytes one descriptor chain receives.
pub const MAX_BYTES_PER_CHAIN: u32 = 64 * 1024;
/// Random bytes are fetched and copied in pieces of this size.
const CHUNK: usize = 4096;

struct Active {
    memory: DmaMemory,
    queue: Queue,
    interrupt: Arc<dyn Interrupt>,
}

/// The entropy device.
pub struct Rng {
    queue_sizes: [u16; 1],
    acked_features: u64,
    active: Option<Active>,
}

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}

impl Rng {
    pub fn new() -> Self {
        Rng {
            queue_sizes: [RNG_QUEUE_SIZE],
            acked_features: 0,
            active: None,
        }
    }

    /// The features the driver accepted (0 before negotiation).
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }
}

/// Fills `buf` from the kernel's CSPRNG with getrandom(2), retrying short reads and EINTR.
///
/// Hand-written instead of the `getrandom` crate: the crate finds getrandom through dlsym,
/// which fails in the static monitor binary, and then falls back to opening /dev/urandom,
/// which the vCPU thread's seccomp filter (rightly) refuses.
fn host_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a writable buffer of exactly `rest.len()` bytes, and flags 0 asks
        // for the urandom pool (blocking only before it is initialised at boot).
        let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if got < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += got as usize;
    }
    Ok(())
}

/// Fills the device-writable buffers of `chain`, up to [`MAX_BYTES_PER_CHAIN`]; returns the
/// bytes written. Stops at the first buffer it cannot write (outside guest memory).
fn fill_chain(memory: &DmaMemory, chain: DescriptorChain<&DmaMemory>) -> u32 {
    let mut written: u32 = 0;
    let mut chunk = [0u8; CHUNK];
    for desc in chain.writable() {
        let mut done: u32 = 0;
        while done < desc.len() && written < MAX_BYTES_PER_CHAIN {
            let want = (desc.len() - done).min(MAX_BYTES_PER_CHAIN - written) as usize;
            let piece = &mut chunk[..want.min(CHUNK)];
            if host_random(piece).is_err() {
                return written;
            }
            let Some(addr) = desc.addr().0.checked_add(u64::from(done)) else {
                return written;
            };
            if memory
                .write_slice(piece, vm_memory::GuestAddress(addr))
                .is_err()
            {
                return written;
            }
            done += piece.len() as u32;
            written += piece.len() as u32;
        }
        if written >= MAX_BYTES_PER_CHAIN {
            break;
        }
    }
    written
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_id::RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn offered_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features;
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        let Activation {
            memory,
            queues,
            interrupt,
        } = activation;
        let Some(queue) = queues.into_iter().next() else {
            return Err(DeviceError::Activate(
                "virtio-rng needs its request queue".to_string(),
            ));
        };
        self.active = Some(Active {
            memory,
            queue,
            interrupt,
        });
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) {
        let Some(Active {
            memory,
            queue: requests,
            interrupt,
        }) = self.active.as_mut()
        else {
            return;
        };
        if queue != 0 || !requests.ready() {
            return;
        }
        let mut used = false;
        for _ in 0..MAX_CHAINS_PER_NOTIFY {
            let Some(chain) = requests.pop_descriptor_chain(&*memory) else {
                break;
            };
            let head = chain.head_index();
            let written = fill_chain(memory, chain);
            if requests.add_used(&*memory, head, written).is_err() {
                // The used ring is unreachable: nothing more can be returned.
                break;
            }
            used = true;
        }
        if used && requests.needs_notification(&*memory).unwrap_or(true) {
            // A failed interrupt leaves the buffers used; the driver finds them when it polls.
            let _ = interrupt.notify_queue(0);
        }
    }

    fn reset(&mut self) {
        self.active = None;
        self.acked_features = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Address, GuestAddress, GuestMemoryMmap};

    #[derive(Default)]
    struct CountingInterrupt(AtomicUsize);

    impl Interrupt for CountingInterrupt {
        fn notify_queue(&self, _queue: u16) -> Result<(), DeviceError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn notify_config(&self) -> Result<(), DeviceError> {
            Ok(())
        }
    }

    const WRITE: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;
    const NEXT: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;

    fn ram() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).expect("ram")
    }

    /// An activated rng whose queue holds the chains in `descriptors` (a descriptor without
    /// NEXT ends a chain; NEXT indexes are absolute).
    fn rng_with<'m>(
        memory: &'m GuestMemoryMmap,
        descriptors: &[SplitDescriptor],
    ) -> (
        Rng,
        Arc<CountingInterrupt>,
        MockSplitQueue<'m, GuestMemoryMmap>,
    ) {
        let mock = MockSplitQueue::new(memory, RNG_QUEUE_SIZE);
        let raw: Vec<RawDescriptor> = descriptors
            .iter()
            .map(|d| RawDescriptor::from(*d))
            .collect();
        mock.add_desc_chains(&raw, 0).expect("chains");
        let queue: Queue = mock.create_queue().expect("queue");
        let interrupt = Arc::new(CountingInterrupt::default());
        let mut rng = Rng::new();
        rng.activate(Activation {
            memory: crate::dma::identity(memory),
            queues: vec![queue],
            interrupt: interrupt.clone(),
        })
        .expect("activate");
        (rng, interrupt, mock)
    }

    fn used_len(
        memory: &GuestMemoryMmap,
        mock: &MockSplitQueue<'_, GuestMemoryMmap>,
        i: u64,
    ) -> u32 {
        // Used ring: flags(2) idx(2), then {id: u32, len: u32} elements.
        memory
            .read_obj::<u32>(mock.used_addr().unchecked_add(4 + 8 * i + 4))
            .expect("used elem")
    }

    #[test]
    fn fills_writable_buffers_and_skips_readable_ones() {
        let memory = ram();
        let chain = [
            SplitDescriptor::new(0x10_0000, 16, NEXT, 1),
            SplitDescriptor::new(0x20_0000, 64, WRITE, 0),
        ];
        let (mut rng, interrupt, mock) = rng_with(&memory, &chain);
        rng.queue_notify(0);
        assert_eq!(used_len(&memory, &mock, 0), 64);
        let mut filled = [0u8; 64];
        memory
            .read_slice(&mut filled, GuestAddress(0x20_0000))
            .expect("read");
        assert!(filled.iter().any(|b| *b != 0), "random bytes arrived");
        let mut untouched = [0u8; 16];
        memory
            .read_slice(&mut untouched, GuestAddress(0x10_0000))
            .expect("read");
        assert_eq!(untouched, [0; 16], "driver-readable buffer left alone");
        assert_eq!(interrupt.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_chain_gets_at_most_the_byte_cap() {
        let memory = ram();
        let chain = [SplitDescriptor::new(0x10_0000, 0x30_0000, WRITE, 0)];
        let (mut rng, _, mock) = rng_with(&memory, &chain);
        rng.queue_notify(0);
        assert_eq!(used_len(&memory, &mock, 0), MAX_BYTES_PER_CHAIN);
    }

    #[test]
    fn buffers_outside_memory_get_a_short_answer_not_a_panic() {
        let memory = ram();
        let chains = [
            SplitDescriptor::new(0x3f_fff0, 64, WRITE, 0),
            SplitDescriptor::new(u64::MAX - 8, 64, WRITE, 0),
        ];
        let (mut rng, _, mock) = rng_with(&memory, &chains);
        rng.queue_notify(0);
        assert_eq!(used_len(&memory, &mock, 0), 0);
        assert_eq!(used_len(&memory, &mock, 1), 0);
        // Notifying other queues, or after reset, does nothing.
        rng.queue_notify(3);
        rng.reset();
        rng.queue_notify(0);
    }

    #[test]
    fn one_notify_handles_a_bounded_number_of_chains() {
        let memory = ram();
        let chains: Vec<SplitDescriptor> = (0..RNG_QUEUE_SIZE)
            .map(|i| SplitDescriptor::new(0x10_0000 + u64::from(i) * 16, 16, WRITE, 0))
            .collect();
        let (mut rng, _, mock) = rng_with(&memory, &chains);
        rng.queue_notify(0);
        let used_idx = memory
            .read_obj::<u16>(mock.used_addr().unchecked_add(2))
            .expect("used idx");
        assert_eq!(
            usize::from(used_idx),
            MAX_CHAINS_PER_NOTIFY.min(RNG_QUEUE_SIZE.into())
        );
    }
}

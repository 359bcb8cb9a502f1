//! Task events for containerd, published in order from one thread so a slow containerd never
//! holds up a task request, and an exit is never published before the start it follows.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::publisher::RemotePublisher;

type Queued = (String, Box<dyn MessageDyn>);

pub struct Events {
    queue: Mutex<Sender<Queued>>,
}

impl Events {
    /// Starts the publishing thread.
    pub fn start(publisher: RemotePublisher, namespace: String) -> Events {
        let (tx, rx) = channel::<Queued>();
        std::thread::spawn(move || {
            for (topic, event) in rx {
                if let Err(e) = publisher.publish(Context::default(), &topic, &namespace, event) {
                    log::warn!("publishing {topic}: {e}");
                }
            }
        });
        Events {
            queue: Mutex::new(tx),
        }
    }

    pub fn send<E: Event + 'static>(&self, event: E) {
        let topic = event.topic();
        if let Ok(queue) = self.queue.lock() {
            let _ = queue.send((topic, Box::new(event)));
        }
    }
}

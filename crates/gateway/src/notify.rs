//! Change notifications from backends (`list_changed`, `resources/updated`), fanned out to
//! whoever listens: catalog caches and connected clients.

use gatehouse_wire::Message;
use tokio::sync::broadcast;

/// One notification a backend sent outside any call.
#[derive(Debug, Clone)]
pub struct ServerChange {
    /// The backend server's name.
    pub server: String,
    /// The notification as the server sent it.
    pub message: Message,
}

/// A broadcast hub of [`ServerChange`]s.
#[derive(Debug)]
pub struct ChangeHub {
    tx: broadcast::Sender<ServerChange>,
}

impl Default for ChangeHub {
    fn default() -> Self {
        ChangeHub {
            tx: broadcast::channel(256).0,
        }
    }
}

impl ChangeHub {
    /// Publishes a change; nobody listening is fine.
    pub fn publish(&self, server: &str, message: Message) {
        tracing::debug!(server, method = %crate::observe::shown(message.method()), "server change");
        let _ = self.tx.send(ServerChange {
            server: server.to_string(),
            message,
        });
    }

    /// Subscribes to every later change.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerChange> {
        self.tx.subscribe()
    }
}

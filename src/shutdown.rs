//! The server-wide stop signal: endpoints stop taking new work when it
//! fires and finish what is in flight.

use std::sync::Arc;

use tokio::sync::watch;

/// Fires the stop signal; cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(Arc<watch::Sender<bool>>);

/// Waits for the stop signal; cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

/// A connected trigger and signal.
pub fn channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger(Arc::new(sender)), ShutdownSignal(receiver))
}

impl ShutdownTrigger {
    /// Fires the signal; later calls do nothing more.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// A signal connected to this trigger.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.0.subscribe())
    }
}

impl ShutdownSignal {
    /// Completes once the signal has fired (or its trigger is gone, which
    /// only happens as the process exits).
    pub async fn fired(mut self) {
        let _ = self.0.wait_for(|&stop| stop).await;
    }

    /// Whether the signal has fired.
    pub fn has_fired(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn every_signal_sees_the_trigger() {
        let (trigger, signal) = channel();
        let later = trigger.signal();
        assert!(!signal.has_fired());
        let waiting = tokio::spawn(signal.clone().fired());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(later.has_fired());
        later.fired().await;
    }
}

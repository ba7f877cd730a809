//! The daemon's event bus: lifecycle events (zones, policies, containers) and, from the
//! enforcement layers, deny events. A bounded ring keeps recent history for late readers;
//! followers get new events through bounded channels, and a follower that cannot keep up loses
//! events rather than slowing the daemon.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// How many past events the ring keeps.
const HISTORY: usize = 1024;
/// Events a follower may lag behind before it starts losing them.
const FOLLOWER_BUFFER: usize = 256;

/// One event, as `rauha events` and the gRPC `WatchEvents` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub zone: String,
    /// e.g. `zone.created`, `policy.applied`, `container.started`, `container.exited`,
    /// `container.oom`.
    pub event_type: String,
    pub message: String,
}

struct Follower {
    zone: Option<String>,
    sender: async_channel::Sender<Event>,
}

/// The bus.
#[derive(Default)]
pub struct EventBus {
    history: Mutex<VecDeque<Event>>,
    followers: Mutex<Vec<Follower>>,
}

impl EventBus {
    /// Record an event and hand it to every follower interested in its zone.
    pub fn publish(&self, zone: &str, event_type: &str, message: impl Into<String>) {
        let event = Event {
            timestamp: super::format_timestamp(jiff::Timestamp::now()),
            zone: zone.to_owned(),
            event_type: event_type.to_owned(),
            message: message.into(),
        };
        {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(event.clone());
        }
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        followers.retain(|follower| {
            if follower.zone.as_ref().is_some_and(|zone| *zone != event.zone) {
                return !follower.sender.is_closed();
            }
            match follower.sender.try_send(event.clone()) {
                Ok(()) | Err(async_channel::TrySendError::Full(_)) => true,
                Err(async_channel::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Past events of `zone` (or all), oldest first.
    pub fn history(&self, zone: Option<&str>) -> Vec<Event> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.iter().filter(|e| zone.is_none_or(|z| e.zone == z)).cloned().collect()
    }

    /// Past events plus a receiver of new ones, taken atomically so none falls in between.
    pub fn follow(&self, zone: Option<String>) -> (Vec<Event>, async_channel::Receiver<Event>) {
        let (sender, receiver) = async_channel::bounded(FOLLOWER_BUFFER);
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        let past = self.history(zone.as_deref());
        followers.push(Follower { zone, sender });
        (past, receiver)
    }
}

impl super::Daemon {
    /// Ticket for a pipe carrying the events of `zone` (or all) as JSON lines: the history, then
    /// (with `follow`) new events until the reader goes away.
    pub fn events_stream(
        &self,
        zone: Option<String>,
        follow: bool,
    ) -> Result<crate::rpc::Ticket, super::error::RequestError> {
        self.check_event_zone(zone.as_deref())?;
        let (read, write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| {
                super::error::RequestError::Io { path: "pipe".into(), source: e.into() }
            })?;
        let (past, receiver) = if follow {
            let (past, receiver) = self.events.follow(zone);
            (past, Some(receiver))
        } else {
            (self.events.history(zone.as_deref()), None)
        };
        let ticket = self.park_fds(vec![read]);
        let writer =
            std::thread::Builder::new().name("events-follower".to_owned()).spawn(move || {
                let mut pipe = std::fs::File::from(write);
                let mut send = |event: &Event| -> bool {
                    let Ok(mut line) = serde_json::to_vec(event) else { return false };
                    line.push(b'\n');
                    std::io::Write::write_all(&mut pipe, &line).is_ok()
                };
                if !past.iter().all(&mut send) {
                    return;
                }
                if let Some(receiver) = receiver {
                    while let Ok(event) = receiver.recv_blocking() {
                        if !send(&event) {
                            return;
                        }
                    }
                }
            });
        writer.map_err(|source| super::error::RequestError::Io {
            path: "events thread".into(),
            source,
        })?;
        Ok(ticket)
    }

    /// The events of `zone` (or all) in-process: recent history, and a receiver of new events
    /// taken atomically with it. The gRPC facade streams these; `events_stream` is the same
    /// bus behind a pipe.
    #[cfg(feature = "grpc")]
    pub(crate) fn follow_events(
        &self,
        zone: Option<String>,
    ) -> Result<(Vec<Event>, async_channel::Receiver<Event>), super::error::RequestError> {
        self.check_event_zone(zone.as_deref())?;
        Ok(self.events.follow(zone))
    }

    fn check_event_zone(&self, zone: Option<&str>) -> Result<(), super::error::RequestError> {
        if let Some(zone) = zone {
            super::zones::check_zone_name(zone)?;
            self.registry().get(zone)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_filtered_and_followers_get_new_events() {
        let bus = EventBus::default();
        for n in 0..HISTORY + 10 {
            bus.publish(if n % 2 == 0 { "a" } else { "b" }, "test", n.to_string());
        }
        assert_eq!(bus.history(None).len(), HISTORY);
        assert!(bus.history(Some("a")).iter().all(|e| e.zone == "a"));
        let (past, receiver) = bus.follow(Some("b".to_owned()));
        assert_eq!(past.len(), HISTORY / 2);
        bus.publish("a", "test", "skip");
        bus.publish("b", "test", "take");
        assert_eq!(receiver.try_recv().unwrap().message, "take");
        assert!(receiver.try_recv().is_err());
        drop(receiver);
        bus.publish("b", "test", "nobody");
        assert!(bus.followers.lock().unwrap().is_empty(), "closed followers are dropped");
    }
}

//! The data plane: listeners, ClientHello peek, routing, byte pumping.
//!
//! Flow of one connection: [`listener`] accepts it under the listener's connection limit and
//! spawns a tracked task; [`passthrough`] peeks the ClientHello (`fedgate_dataplane::sni`), picks a route
//! (`fedgate_dataplane::route`), dials an upstream, replays the peeked bytes and splices
//! (`fedgate_dataplane::pump`).

pub mod listener;
pub mod passthrough;

pub use listener::{Listener, ListenerState, RouteTarget};
pub use passthrough::Reject;

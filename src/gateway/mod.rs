//! The data plane: listeners, ClientHello peek, routing, byte pumping.
//!
//! Flow of one connection: [`listener`] accepts it under the listener's connection limit and
//! spawns a tracked task; [`passthrough`] peeks the ClientHello ([`sni`]), picks a route
//! ([`route`]), dials an upstream, replays the peeked bytes and splices ([`pump`]).

pub mod listener;
pub mod passthrough;
pub mod route;
pub mod sni;

pub use listener::{Listener, ListenerState, RouteTarget};
pub use passthrough::Reject;

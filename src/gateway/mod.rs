//! The data plane: listeners, ClientHello peek, routing, byte pumping.
//!
//! Flow of one connection: [`listener`] accepts it under the listener's connection limit
//! (`fedgate_dataplane::serve`) and spawns a tracked task; [`passthrough`] peeks the
//! ClientHello (`fedgate_dataplane::sni`), picks a route (`fedgate_dataplane::route`), dials an
//! upstream (`fedgate_dataplane::upstreams`), replays the peeked bytes and splices
//! (`fedgate_dataplane::pump`). Both read the listener's [`state`], which imports neither.

pub mod listener;
pub mod passthrough;
pub mod state;

pub use listener::{Handler, Listener, Terminating};
pub use passthrough::Reject;
pub use state::{ListenerState, RouteTarget};

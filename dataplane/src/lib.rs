//! fedgate's data-plane toolkit: the pieces every listener kind (passthrough, bridge egress,
//! bridge ingress, sidecar inbound and outbound) is built from.
//!
//! Invariant, enforced by the crate boundary: nothing here reads configuration files, the
//! CLI or the federation machinery. Callers hand in typed parts (addresses, limits, TLS
//! configs, route tables) and get back connections, byte counts and refusals.
//!
//! * [`pump`]: bidirectional byte copy with idle deadlines (splice on Linux for TCP pairs).
//! * [`proxy_protocol`]: PROXY v2 encode/decode and fedgate's TLV accessors.
//! * [`relay`]: the `fedgate-relay/1` ALPN that gates PROXY headers between fedgate hops.
//! * [`sni`]: ClientHello parsing (SNI, ALPN) across records; [`route`]: the SNI route table.
//! * [`workers`]: thread-per-core runtimes; [`shutdown`]: signals and drain.
//! * [`listen`]: the listening sockets, one shared by the workers, one `SO_REUSEPORT`
//!   socket per worker (guarded against foreign members of the port), or one socket whose
//!   [`handoff`] thread deals connections to the workers.
//! * [`accept`]: the accept loop's error handling (backoff, never ending a server);
//!   [`serve`]: the one accept loop (connection limit, tracked tasks, hard stop).
//! * [`upstreams`]: round-robin endpoints, dialed with a timeout and falling over to the next.
//! * [`tls`]: TLS accept and connect with a deadline; [`swap`]: the hot-swap cell of listener
//!   state (a `watch` channel).
//! * [`backoff`]: the capped exponential retry schedule (also used by the federation crate).

pub mod accept;
pub mod backoff;
pub mod handoff;
pub mod listen;
pub mod proxy_protocol;
pub mod pump;
pub mod relay;
pub mod route;
pub mod serve;
pub mod shutdown;
pub mod sni;
pub mod swap;
pub mod tls;
pub mod upstreams;
pub mod workers;

//! The data plane: listeners, ClientHello peek, routing, byte pumping.

pub mod pump;
pub mod route;
pub mod sni;

//! A registration that follows the server's health: `Registration::set_serving`
//! (`serving`), and the tie to `tonic-health`'s reporter with the graceful
//! shutdown order (`reporter`). The client side of the protocol is tested
//! next to it, in `src/balance/health_check/tests.rs`.

mod reporter;
mod serving;

//! A TCP proxy in front of an etcd member (`support::proxy`), so that a test
//! can break, slow down or silence a client's connections while etcd keeps
//! running.
//!
//! Everything is switchable at run time, for the connections already open
//! and for new ones:
//!
//! - [`pass`](Proxy::pass): forward at once (the start);
//! - [`delay`](Proxy::delay) / [`delay_each`](Proxy::delay_each): every byte
//!   arrives a fixed time after it was read, per direction (a fixed round
//!   trip; throughput is not limited);
//! - [`blackhole`](Proxy::blackhole): sockets stay open, new connections are
//!   accepted, nothing is forwarded either way (a partition, a frozen VM);
//!   what was sent waits, and flows on after [`pass`](Proxy::pass), as after
//!   a healed partition;
//! - [`cut`](Proxy::cut) (FIN), [`reset`](Proxy::reset) (RST): closes every
//!   connection open now; [`refuse`](Proxy::refuse) / [`restore`](Proxy::restore):
//!   closes them and refuses new ones until restored.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A TCP proxy on 127.0.0.1 in front of `target`. Stops on drop (closing
/// every connection).
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Bumped by every cut: a connection lives while it is the one it began in.
    generation: u64,
    /// Whether the last cut was a reset (RST rather than FIN).
    reset: bool,
    /// Whether new connections are forwarded.
    open: bool,
    /// Nothing is forwarded while set.
    blackhole: bool,
    /// Client to etcd.
    up: Duration,
    /// etcd to client.
    down: Duration,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (state, _) = watch::channel(State {
            generation: 0,
            reset: false,
            open: true,
            blackhole: false,
            up: Duration::ZERO,
            down: Duration::ZERO,
        });
        let states = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut now = states.subscribe();
                let State {
                    generation, open, ..
                } = *now.borrow_and_update();
                if !open {
                    continue; // dropped: the client sees the connection close
                }
                tokio::spawn(connection(inbound, target, now, generation));
            }
        });
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// `127.0.0.1:PORT` of the proxy; a client's URL is `http://` or
    /// `https://` and this (the member's test certificate is for 127.0.0.1,
    /// so TLS through the proxy works).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every connection open through the proxy now (FIN); new ones
    /// are accepted.
    pub fn cut(&self) {
        self.state.send_modify(|state| {
            state.generation += 1;
            state.reset = false;
        });
    }

    /// Resets every connection open through the proxy now (RST); new ones
    /// are accepted.
    pub fn reset(&self) {
        self.state.send_modify(|state| {
            state.generation += 1;
            state.reset = true;
        });
    }

    /// Closes every connection open through the proxy now and refuses new
    /// ones (accepted, then closed at once) until [`restore`](Proxy::restore).
    pub fn refuse(&self) {
        self.state.send_modify(|state| {
            state.generation += 1;
            state.reset = false;
            state.open = false;
        });
    }

    /// Forwards new connections again after [`refuse`](Proxy::refuse).
    pub fn restore(&self) {
        self.state.send_modify(|state| state.open = true);
    }

    /// Forwards nothing, either way, on open and new connections, which stay
    /// open, until [`pass`](Proxy::pass).
    pub fn blackhole(&self) {
        self.state.send_modify(|state| state.blackhole = true);
    }

    /// Forwards again, at once: no black hole, no delay.
    pub fn pass(&self) {
        self.state.send_modify(|state| {
            state.blackhole = false;
            state.up = Duration::ZERO;
            state.down = Duration::ZERO;
        });
    }

    /// A round trip of `rtt` added: half of it each way.
    pub fn delay(&self, rtt: Duration) {
        self.delay_each(rtt / 2, rtt / 2);
    }

    /// `up` added to the way to etcd, `down` to the way back.
    pub fn delay_each(&self, up: Duration, down: Duration) {
        self.state.send_modify(|state| {
            state.up = up;
            state.down = down;
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Forwards one connection until the proxy cuts it or either side closes.
async fn connection(
    mut inbound: TcpStream,
    target: SocketAddr,
    mut state: watch::Receiver<State>,
    generation: u64,
) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let reset = {
        let (client_read, client_write) = inbound.split();
        let (etcd_read, etcd_write) = outbound.split();
        let up = pump(client_read, etcd_write, state.clone(), |s| s.up);
        let down = pump(etcd_read, client_write, state.clone(), |s| s.down);
        let cut = async {
            let _ = state.wait_for(|s| s.generation != generation).await;
            let reset = state.borrow().reset;
            reset
        };
        tokio::select! {
            _ = async { tokio::join!(up, down) } => false,
            reset = cut => reset,
        }
    };
    if reset {
        // SO_LINGER 0: closing sends RST instead of FIN.
        let _ = inbound.set_zero_linger();
        let _ = outbound.set_zero_linger();
    }
}

/// Copies `from` to `to`, each chunk held until `delay(state)` after it was
/// read, and not at all while the proxy is a black hole.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    state: watch::Receiver<State>,
    delay: fn(&State) -> Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let mut read_state = state.clone();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if read_state.wait_for(|s| !s.blackhole).await.is_err() {
                return;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = Instant::now() + delay(&read_state.borrow());
            if tx.send((at, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let mut write_state = state;
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if write_state.wait_for(|s| !s.blackhole).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

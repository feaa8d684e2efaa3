//! A TCP proxy in front of an etcd member (`support::proxy`), so that a test
//! can break a client's connections while etcd keeps running.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A TCP proxy on 127.0.0.1 in front of `target`. [`cut`](Proxy::cut) closes
/// every connection open through it, and new ones are accepted as before;
/// [`refuse`](Proxy::refuse) closes them and refuses new ones until
/// [`restore`](Proxy::restore). Stops on drop.
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
    /// Whether new connections are forwarded.
    open: bool,
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
            open: true,
        });
        let states = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut now = states.subscribe();
                let State { generation, open } = *now.borrow_and_update();
                if !open {
                    continue; // dropped: the client sees the connection close
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = now.wait_for(|state| state.generation != generation) => {}
                    }
                });
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

    /// Closes every connection open through the proxy now; new ones are
    /// accepted.
    pub fn cut(&self) {
        self.state.send_modify(|state| state.generation += 1);
    }

    /// Closes every connection open through the proxy now and refuses new
    /// ones (accepted, then closed at once) until [`restore`](Proxy::restore).
    pub fn refuse(&self) {
        self.state.send_modify(|state| {
            state.generation += 1;
            state.open = false;
        });
    }

    /// Forwards new connections again after [`refuse`](Proxy::refuse).
    pub fn restore(&self) {
        self.state.send_modify(|state| state.open = true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

//! The Greeter servers the benchmarks call: one thread with its own runtime
//! serves them all, and each counts its calls and open connections.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tonic::transport::server::Connected;
use tonic::transport::Server as TonicServer;
use tonic_etcd::Instance;

use crate::measure::pin_to_cpu;
use crate::support::balancer::counting_service;

/// A server's connection, counted among its server's open connections until
/// the server drops it (when the client closes it).
struct Counted {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connected for Counted {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// One Greeter server, as the benchmarks see it.
#[derive(Clone)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) served: Arc<AtomicUsize>,
    pub(crate) open: Arc<AtomicUsize>,
}

impl Server {
    pub(crate) fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub(crate) fn instance(&self, service: &str) -> Instance {
        Instance::new(service, self.addr.to_string()).unwrap()
    }
}

/// Greeter servers on 127.0.0.1, one per delay, all served by one thread with
/// its own single-threaded runtime. Stopped on drop.
pub(crate) struct Servers {
    pub(crate) list: Vec<Server>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Servers {
    pub(crate) fn start(delays: &[Duration]) -> Servers {
        let mut list = Vec::new();
        let mut serving = Vec::new();
        for &delay in delays {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let server = Server {
                addr: listener.local_addr().unwrap(),
                served: Arc::new(AtomicUsize::new(0)),
                open: Arc::new(AtomicUsize::new(0)),
            };
            serving.push((listener, delay, server.clone()));
            list.push(server);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            pin_to_cpu(1);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                for (listener, delay, server) in serving {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let open = server.open.clone();
                    let incoming = futures_util::stream::unfold(listener, move |listener| {
                        let open = open.clone();
                        async move {
                            let next = listener.accept().await.map(|(stream, _)| {
                                let _ = stream.set_nodelay(true);
                                open.fetch_add(1, Ordering::SeqCst);
                                Counted { stream, open }
                            });
                            Some((next, listener))
                        }
                    });
                    let hello = counting_service(server.addr, delay, server.served);
                    tokio::spawn(
                        TonicServer::builder()
                            .add_service(hello)
                            .serve_with_incoming(incoming),
                    );
                }
                let _ = stopped.await;
            });
            // Dropping the runtime closes the listeners and every connection.
            drop(runtime);
        });
        Servers {
            list,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

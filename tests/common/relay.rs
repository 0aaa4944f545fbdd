//! A TCP relay in front of a real server (the kube-apiserver), with a switch:
//! while it is down, open connections are cut and new ones are closed at
//! once, as when the API server or the network to it is gone. TLS passes
//! through untouched. Loopback only; stopped when dropped.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Relay {
    /// `127.0.0.1:<port>`.
    pub address: String,
    up: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let up = Arc::new(watch::Sender::new(true));
        let upstream: Arc<str> = upstream.into();
        let switch = up.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !*switch.borrow() {
                    drop(client);
                    continue;
                }
                let (upstream, mut down) = (upstream.clone(), switch.subscribe());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&*upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Relay { address, up, task }
    }

    /// Down: cut every connection and refuse new ones; up: relay again.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

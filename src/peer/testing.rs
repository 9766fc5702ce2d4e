//! Peers for tests: a real serve on a thread of this process, or a scripted one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::io::{BufReader, BufWriter};

use super::{Conn, Peer};
use crate::config::PeerSpec;

/// A peer served by a real [`Server`](crate::serve::Server) on a thread of this process, over
/// a socket pair, with `home` as its home: for tests of what the client does with real serves.
pub(crate) async fn in_process(name: &str, home: &std::path::Path) -> Peer {
    let (client, server) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    let home = home.to_path_buf();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(server.try_clone().expect("clone"));
        let mut w = std::io::BufWriter::new(server);
        let _ = crate::serve::Server::new(Some(home)).serve(&mut r, &mut w);
    });
    client.set_nonblocking(true).expect("nonblocking");
    let (r, w) = tokio::net::UnixStream::from_std(client)
        .expect("tokio socket")
        .into_split();
    let mut conn = Conn {
        name: name.into(),
        reader: BufReader::new(Box::new(r)),
        writer: BufWriter::new(Box::new(w)),
        child: None,
        stderr: Arc::new(StdMutex::new(VecDeque::new())),
        warnings: Vec::new(),
        key: None,
        home: Default::default(),
        trips: Default::default(),
        owed: Default::default(),
        far: false,
    };
    let caps = match conn.handshake(None, false).await {
        Ok(caps) => caps,
        Err(e) => panic!("{}", e.into_error(name, false, None)),
    };
    let spec = PeerSpec::parse(name, None).expect("a host name");
    Peer::new(name.into(), Some(spec), None, caps, conn, None)
}

/// A conversation with an in-memory server task instead of a child process, with a peer
/// named `beta` whose home is `/h`.
pub(crate) fn fake_peer<F, Fut>(server: F) -> Conn
where
    F: FnOnce(tokio::io::DuplexStream, tokio::io::DuplexStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (client_w, server_r) = tokio::io::duplex(1 << 16);
    let (server_w, client_r) = tokio::io::duplex(1 << 16);
    tokio::spawn(server(server_r, server_w));
    Conn {
        name: "beta".into(),
        reader: BufReader::new(Box::new(client_r)),
        writer: BufWriter::new(Box::new(client_w)),
        child: None,
        stderr: Arc::new(StdMutex::new(VecDeque::new())),
        warnings: Vec::new(),
        key: None,
        // As a handshake with a peer whose home is `/h` would have set it.
        home: crate::paths::WirePath::from("/h"),
        trips: Default::default(),
        owed: Default::default(),
        far: false,
    }
}

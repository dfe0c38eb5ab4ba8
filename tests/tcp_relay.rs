//! A TCP relay on loopback in front of an sshd, for tests that need a connection to fail at an
//! exact point: it counts the bytes going up (client to server) and can stop forwarding them
//! once a count is reached, either for good (the connection is cut: both sides closed) or until
//! the test resumes it (paused). Counting bytes, not time, makes the point the same on every
//! run. Threads of the test process only; everything ends when the relay is dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// Bytes forwarded upward so far (all connections).
    up: u64,
    /// Stop forwarding upward at this many bytes and close every connection.
    cut_at: Option<u64>,
    /// Stop forwarding upward at this many bytes until [`Relay::resume`].
    pause_at: Option<u64>,
    /// A pause was reached and is holding.
    paused: bool,
    /// Connections were cut.
    cut: bool,
    /// Every stream, to close them on a cut.
    streams: Vec<TcpStream>,
}

pub struct Relay {
    pub port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Listen on a free loopback port and relay each connection to `127.0.0.1:target`.
    pub fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        connect(client, server, shared.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Relay { port, state, stop }
    }

    /// Close every connection once `bytes` have gone up (counted from the relay's start).
    pub fn cut_at(&self, bytes: u64) {
        self.state.0.lock().unwrap().cut_at = Some(bytes);
    }

    /// Hold what goes up once `bytes` have gone up, until [`Relay::resume`].
    pub fn pause_at(&self, bytes: u64) {
        self.state.0.lock().unwrap().pause_at = Some(bytes);
    }

    /// Forward again after a pause.
    pub fn resume(&self) {
        let (lock, wake) = &*self.state;
        let mut state = lock.lock().unwrap();
        state.pause_at = None;
        state.paused = false;
        wake.notify_all();
    }

    /// Bytes forwarded upward so far.
    pub fn up(&self) -> u64 {
        self.state.0.lock().unwrap().up
    }

    /// Whether the connections were cut.
    pub fn was_cut(&self) -> bool {
        self.state.0.lock().unwrap().cut
    }

    /// Wait until a pause holds (at most `limit`); false if it never did.
    pub fn wait_paused(&self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.state.0.lock().unwrap().paused {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.resume();
        for stream in &self.state.0.lock().unwrap().streams {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn connect(client: TcpStream, server: TcpStream, state: Arc<(Mutex<State>, Condvar)>) {
    {
        let mut locked = state.0.lock().unwrap();
        locked.streams.push(client.try_clone().unwrap());
        locked.streams.push(server.try_clone().unwrap());
    }
    let (mut client_reader, mut server_writer) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up_state = state.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let n = match client_reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut sent = 0;
            while sent < n {
                let (lock, wake) = &*up_state;
                let mut locked = lock.lock().unwrap();
                if locked.cut {
                    return;
                }
                // How much may go before the next point.
                let mut room = (n - sent) as u64;
                if let Some(at) = locked.cut_at {
                    if locked.up >= at {
                        locked.cut = true;
                        for stream in &locked.streams {
                            let _ = stream.shutdown(Shutdown::Both);
                        }
                        return;
                    }
                    room = room.min(at - locked.up);
                }
                if let Some(at) = locked.pause_at {
                    if locked.up >= at {
                        locked.paused = true;
                        let _unused = wake.wait(locked).unwrap();
                        continue;
                    }
                    room = room.min(at - locked.up);
                }
                locked.up += room;
                drop(locked);
                let end = sent + room as usize;
                if server_writer.write_all(&buffer[sent..end]).is_err() {
                    return;
                }
                sent = end;
            }
        }
        let _ = server_writer.shutdown(Shutdown::Write);
    });
    let (mut server_reader, mut client_writer) = (server, client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_reader, &mut client_writer);
        let _ = client_writer.shutdown(Shutdown::Write);
    });
}

//! An AWS emulator for tests: moto in server mode (`moto[server]`, in the
//! test venv that `scripts/test-assets` makes), on a free 127.0.0.1 port.
//! Nothing reaches AWS, and no real credentials are needed.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A running emulator; `endpoint` is its base URL.
#[derive(Debug)]
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

/// Runs the server in a thread, says so on stdout, and exits when the test
/// process that started it is gone (a static is never dropped).
const LAUNCHER: &str = r#"
import os, sys, time
from moto.server import ThreadedMotoServer
parent = os.getppid()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
while os.getppid() == parent:
    time.sleep(0.5)
server.stop()
"#;

impl Moto {
    /// Starts an emulator of its own; panics with what is missing.
    pub fn start() -> Moto {
        let python = std::env::var("PADDOCK_TEST_PYTHON").unwrap_or_else(|_| {
            panic!("PADDOCK_TEST_PYTHON is not set: run `eval \"$(scripts/test-assets)\"` (scripts/test does it)")
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(LAUNCHER)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the emulator's output");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the emulator's first line");
        assert_eq!(
            line.trim(),
            "ready",
            "moto did not start (is moto[server] in the test venv? scripts/test-assets installs it)"
        );
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// The emulator shared by every test of this test binary.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(Moto::start)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

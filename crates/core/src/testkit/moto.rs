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
///
/// It first applies `moto_shims.py` (its second argument): two shims for
/// gaps in moto's CloudFormation that paddock's nested stacks meet, and
/// ECS container instances sized as a g5.12xlarge, so GPU tasks can be
/// placed.
const LAUNCHER: &str = r#"
import os, sys, time
exec(sys.argv[2])
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
            .arg(MOTO_SHIMS)
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

/// What [`Moto::ecs_cluster`] made.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EcsFixture {
    pub cluster: String,
    pub subnets: Vec<String>,
    pub security_group: String,
    pub log_group: String,
    pub gpu_capacity_provider: String,
    pub gpu_spot_capacity_provider: String,
}

const MOTO_SHIMS: &str = include_str!("moto_shims.py");

const ECS_FIXTURE: &str = include_str!("ecs_fixture.py");

impl Moto {
    /// Makes an ECS cluster `name` to run tasks in, with its network (a
    /// VPC with DNS hostnames, two subnets, a security group), FARGATE,
    /// FARGATE_SPOT and two GPU capacity providers, one GPU container
    /// instance and a log group; and tells moto to keep tasks RUNNING until
    /// they are stopped (its state manager), instead of advancing them on
    /// every DescribeTasks.
    pub fn ecs_cluster(&self, name: &str) -> EcsFixture {
        let python = std::env::var("PADDOCK_TEST_PYTHON").expect("PADDOCK_TEST_PYTHON");
        let out = Command::new(&python)
            .arg("-c")
            .arg(ECS_FIXTURE)
            .arg(&self.endpoint)
            .arg(name)
            .output()
            .expect("the ECS fixture runs");
        assert!(
            out.status.success(),
            "the ECS fixture failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the ECS fixture's JSON")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

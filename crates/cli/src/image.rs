//! `paddock image build` and `paddock healthcheck`: the paddock image, model
//! images, and the health check those images run.
//!
//! The images are built from this very executable, copied into a small
//! build context with the Dockerfiles of `docker/` (compiled in): nothing is
//! compiled inside Docker. Shared libraries the binary needs beyond what
//! every Debian base has (libc, libstdc++, libgcc) travel with it. The
//! Dockerfiles say `FROM debian:bookworm-slim`; when the engine does not
//! have that image and cannot pull it (an offline machine), it is made
//! here: `debootstrap --variant=minbase bookworm` into a temporary
//! directory, trimmed as the slim image is, then `docker import`ed.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const DOCKERFILE: &str = include_str!("../../../docker/Dockerfile");
const MODEL_DOCKERFILE: &str = include_str!("../../../docker/model.Dockerfile");
const BASE_IMAGE: &str = "debian:bookworm-slim";
/// Libraries every Debian base image has; anything else the binary links
/// is copied into the image beside it.
const BASE_LIBS: &[&str] = &[
    "linux-vdso",
    "ld-linux",
    "libc.so",
    "libm.so",
    "libpthread.so",
    "libdl.so",
    "librt.so",
    "libstdc++.so",
    "libgcc_s.so",
];

#[derive(Debug, clap::Subcommand)]
pub enum ImageCmd {
    /// Build `paddock:<version>` from this executable, and with `--model`
    /// a model image `paddock-model:<model>-<tag>` for each model named.
    Build(BuildArgs),
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Also build this model's image from the local store (repeatable).
    #[arg(long)]
    pub(crate) model: Vec<String>,
    /// The paddock image's name [default: paddock:<version>].
    #[arg(long)]
    pub(crate) tag: Option<String>,
    /// The binary to put in the image [default: this executable].
    #[arg(long)]
    pub(crate) binary: Option<PathBuf>,
    /// The Debian mirror debootstrap uses when debian:bookworm-slim must be made.
    #[arg(
        long,
        env = "PADDOCK_DEBIAN_MIRROR",
        default_value = "http://deb.debian.org/debian"
    )]
    pub(crate) debian_mirror: String,
    #[command(flatten)]
    pub(crate) store: paddock_runtime::cli::StoreArgs,
}

pub fn run(cmd: ImageCmd) -> Result<()> {
    match cmd {
        ImageCmd::Build(args) => build(args),
    }
}

pub(crate) fn build(args: BuildArgs) -> Result<()> {
    let tag = args
        .tag
        .clone()
        .unwrap_or_else(paddock_driver_docker::default_image);
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    // Resolve the models first: a name that is not there fails before
    // anything is built.
    let store = args.store.open()?;
    let models = args
        .model
        .iter()
        .map(|m| {
            store
                .resolve(m)
                .with_context(|| format!("--model {m}"))
                .and_then(|r| {
                    if r.digest.is_empty() {
                        bail!("--model {m}: a model image is built from a model in the store; import the file first (`paddock models import`)");
                    }
                    Ok(r)
                })
        })
        .collect::<Result<Vec<_>>>()?;

    ensure_base_image(&args.debian_mirror)?;

    let context = tempfile::Builder::new()
        .prefix("paddock-image-")
        .tempdir()?;
    let ctx = context.path();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE)?;
    std::fs::write(ctx.join(".dockerignore"), "*\n!paddock\n!lib\n")?;
    copy_stripped(&binary, &ctx.join("paddock"))?;
    let lib = ctx.join("lib");
    std::fs::create_dir_all(&lib)?;
    for l in extra_libraries(&binary)? {
        let name = l.file_name().context("a library path without a name")?;
        std::fs::copy(&l, lib.join(name)).with_context(|| format!("copying {}", l.display()))?;
    }
    let version = env!("CARGO_PKG_VERSION");
    docker_build(
        ctx,
        &tag,
        &[
            ("VERSION", version.to_owned()),
            (
                "REVISION",
                std::env::var("PADDOCK_REVISION").unwrap_or_else(|_| "unknown".into()),
            ),
            ("CREATED", chrono::Utc::now().to_rfc3339()),
        ],
    )?;
    println!("{tag}\t{}", image_size(&tag)?);

    for model in models {
        let context = tempfile::Builder::new()
            .prefix("paddock-model-image-")
            .tempdir()?;
        let ctx = context.path();
        std::fs::write(ctx.join("Dockerfile"), MODEL_DOCKERFILE)?;
        std::fs::write(ctx.join(".dockerignore"), "*\n!models\n")?;
        // The context's store holds this model only: its manifest and blobs.
        let copy = store.export(&model.name, ctx)?;
        let sha = copy
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("sha256-"))
            .unwrap_or_default()
            .to_owned();
        let model_tag = paddock_driver_docker::model_image(&model.name);
        docker_build(
            ctx,
            &model_tag,
            &[
                ("BASE", tag.clone()),
                ("MODEL", model.name.clone()),
                ("MODEL_SHA256", sha),
                ("MODEL_SIZE", copy.size.to_string()),
                ("VERSION", version.to_owned()),
            ],
        )?;
        println!("{model_tag}\t{}", image_size(&model_tag)?);
    }
    Ok(())
}

/// Copies the binary without its debug sections (an image has no use for
/// them, and they are most of a debug build's size) when binutils' `strip`
/// is there; as it is otherwise.
fn copy_stripped(from: &Path, to: &Path) -> Result<()> {
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(from)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(())
}

/// The shared libraries `binary` links beyond those every Debian base has.
fn extra_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    if !out.status.success() {
        // A static binary: nothing to carry.
        return Ok(Vec::new());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // "libgomp.so.1 => /lib/x86_64-linux-gnu/libgomp.so.1 (0x...)"
            let (name, rest) = line.trim().split_once(" => ")?;
            if BASE_LIBS.iter().any(|b| name.starts_with(b)) {
                return None;
            }
            let path = rest.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

pub(crate) fn docker() -> Command {
    let mut c = Command::new("docker");
    // The classic builder uses local images for FROM, so an offline build
    // works; BuildKit may try the registry first.
    if std::env::var_os("DOCKER_BUILDKIT").is_none() {
        c.env("DOCKER_BUILDKIT", "0");
    }
    c
}

pub(crate) fn check(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn docker_build(ctx: &Path, tag: &str, build_args: &[(&str, String)]) -> Result<()> {
    let before = image_id(tag);
    let mut cmd = docker();
    cmd.args(["build", "--quiet", "-t", tag]);
    for (k, v) in build_args {
        cmd.arg("--build-arg").arg(format!("{k}={v}"));
    }
    cmd.arg(ctx).stdout(Stdio::null());
    eprintln!("building {tag}");
    check(cmd, &format!("docker build of {tag}"))?;
    // A rebuild leaves the previous image untagged; remove it unless a
    // container or another tag still uses it.
    if let Some(old) = before.filter(|old| Some(old) != image_id(tag).as_ref()) {
        let _ = docker()
            .args(["rmi", &old])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    Ok(())
}

/// The id of the image `tag` names, if there is one.
fn image_id(tag: &str) -> Option<String> {
    let out = docker()
        .args(["image", "inspect", "-f", "{{.Id}}", tag])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !id.is_empty()).then_some(id)
}

fn image_exists(image: &str) -> Result<bool> {
    Ok(docker()
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run docker (is the Docker CLI installed?)")?
        .success())
}

/// The image's size, as `docker images` shows it (MB).
fn image_size(image: &str) -> Result<String> {
    let out = docker()
        .args(["image", "inspect", "-f", "{{.Size}}", image])
        .output()?;
    let bytes: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Ok(format!("{:.1} MB", bytes as f64 / 1e6))
}

/// Makes `debian:bookworm-slim` when the engine lacks it: debootstrap's
/// minimal base, trimmed of documentation, locales and package caches as
/// the slim image is, imported as that image.
fn ensure_base_image(mirror: &str) -> Result<()> {
    if image_exists(BASE_IMAGE)? {
        return Ok(());
    }
    eprintln!("{BASE_IMAGE} is not on the engine: making it with debootstrap from {mirror}");
    let root = nix::unistd::getuid().is_root();
    let sudo = |program: &str| {
        if root {
            Command::new(program)
        } else {
            let mut c = Command::new("sudo");
            c.arg(program);
            c
        }
    };
    let work = tempfile::Builder::new()
        .prefix("paddock-debootstrap-")
        .tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into()))?;
    let dir = work.path().join("root");
    let result = (|| -> Result<()> {
        let mut cmd = sudo("debootstrap");
        cmd.args(["--variant=minbase", "bookworm"])
            .arg(&dir)
            .arg(mirror)
            .stdout(Stdio::null());
        check(
            cmd,
            "debootstrap (install it with `apt-get install debootstrap`)",
        )?;
        let mut trim = sudo("sh");
        trim.arg("-c").arg(
            "cd \"$1\" && rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/* \
             usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* \
             var/log/*.log var/log/apt/* var/cache/debconf/*-old",
        );
        trim.arg("sh").arg(&dir);
        check(trim, "trimming the base")?;
        let mut tar = sudo("tar");
        tar.args(["--numeric-owner", "-C"])
            .arg(&dir)
            .args(["-c", "."])
            .stdout(Stdio::piped());
        let mut tar = tar.spawn().context("cannot run tar")?;
        let stdout = tar.stdout.take().context("tar's output")?;
        let status = docker()
            .args(["import", "-c", "CMD [\"bash\"]", "-", BASE_IMAGE])
            .stdin(stdout)
            .stdout(Stdio::null())
            .status()
            .context("cannot run docker import")?;
        let tar_status = tar.wait()?;
        if !status.success() || !tar_status.success() {
            bail!("docker import of {BASE_IMAGE} failed ({status}, tar {tar_status})");
        }
        Ok(())
    })();
    if !root {
        // debootstrap's files are root's; the temporary directory's own
        // cleanup cannot remove them.
        let _ = Command::new("sudo").args(["rm", "-rf"]).arg(&dir).status();
    }
    result?;
    eprintln!("made {BASE_IMAGE} ({})", image_size(BASE_IMAGE)?);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// A unix socket to ask [default: $PADDOCK_RUNTIME_SOCKET].
    #[arg(long, env = "PADDOCK_RUNTIME_SOCKET")]
    socket: Option<PathBuf>,
    /// The port on 127.0.0.1 to ask when there is no socket.
    #[arg(long, env = "PADDOCK_RUNTIME_PORT", default_value_t = 11434)]
    port: u16,
    /// The path to ask.
    #[arg(long, default_value = "/api/version")]
    path: String,
}

/// `paddock healthcheck`: exits 0 when the runtime (or server) answers
/// `GET <path>` with 200 within 3 seconds; what the images' HEALTHCHECK runs.
pub async fn healthcheck(args: HealthcheckArgs) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        args.path
    );
    let ask = async {
        let mut head = [0u8; 12];
        match &args.socket {
            Some(path) => {
                let mut s = tokio::net::UnixStream::connect(path).await?;
                s.write_all(request.as_bytes()).await?;
                s.read_exact(&mut head).await?;
            }
            None => {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", args.port)).await?;
                s.write_all(request.as_bytes()).await?;
                s.read_exact(&mut head).await?;
            }
        }
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(3), ask)
        .await
        .context("no answer within 3 s")??;
    if !head.starts_with(b"HTTP/1.1 200") {
        bail!(
            "answered {}",
            String::from_utf8_lossy(&head).trim_end().to_owned()
        );
    }
    Ok(())
}

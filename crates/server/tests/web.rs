//! Browser tests of the web dashboard: headless Chromium driven through
//! chromedriver (started here on a free port, killed on drop) against a
//! real server. Each test saves a screenshot of every page it visits, at
//! desktop width and at a phone width (390 px), under
//! `$CARGO_TARGET_TMPDIR/screenshots/`.
//!
//! Chromium and chromedriver come from Debian (`scripts/install-deps
//! --test`); a missing chromedriver fails the test with that hint.

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One browser at a time: two cores are shared by everything.
static BROWSER_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// A chromedriver child process, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn chromedriver_path() -> PathBuf {
    let candidates = [
        std::env::var("CHROMEDRIVER").unwrap_or_default(),
        "/usr/bin/chromedriver".into(),
        "/usr/lib/chromium/chromedriver".into(),
    ];
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("chromedriver is not installed: run `scripts/install-deps --test` (it installs Debian's chromium and chromium-driver)")
        })
}

async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(chromedriver_path())
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if client
            .get(format!("http://127.0.0.1:{port}/status"))
            .send()
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start on port {port}");
}

/// A headless Chromium session on one server.
struct Browser {
    c: Client,
    base: String,
    prefix: String,
    _driver: Driver,
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&d).expect("screenshot dir");
    d
}

impl Browser {
    async fn open(base: &str, prefix: &str) -> Browser {
        Browser::open_with(base, prefix, &[]).await
    }

    /// [`Browser::open`] with more Chromium flags.
    async fn open_with(base: &str, prefix: &str, flags: &[&str]) -> Browser {
        let driver = start_driver().await;
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": args,
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("a Chromium session (is chromium installed? run scripts/install-deps --test)");
        c.set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .expect("window size");
        Browser {
            c,
            base: base.to_owned(),
            prefix: prefix.to_owned(),
            _driver: driver,
        }
    }

    async fn go(&self, path: &str) {
        self.c
            .goto(&format!("{}{}", self.base, path))
            .await
            .expect("navigate");
    }

    async fn path(&self) -> String {
        let u = self.c.current_url().await.expect("url");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let body = self.js("return document.body.innerText").await;
                panic!(
                    "no element {css} on {}: {e}; page text:\n{body}",
                    self.path().await
                )
            }
        }
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    async fn js(&self, script: &str) -> Value {
        self.c.execute(script, vec![]).await.expect("script")
    }

    /// Waits until `script` (a JS expression) is truthy.
    async fn until(&self, what: &str, script: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self
                .c
                .execute(&format!("return !!({script});"), vec![])
                .await
                .unwrap_or(Value::Bool(false));
            if v == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let body = self.js("return document.body.innerText").await;
                panic!(
                    "timed out waiting for {what} on {}; page text:\n{body}",
                    self.path().await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for the path to start with `prefix`.
    async fn until_path(&self, prefix: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.path().await.starts_with(prefix) {
            if Instant::now() > deadline {
                let body = self.js("return document.body.innerText").await;
                panic!(
                    "expected {prefix}, at {}; page text:\n{body}",
                    self.path().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a desktop screenshot, then one at phone width.
    async fn shot(&self, name: &str) {
        let dir = shots_dir();
        let png = self.c.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{}-{name}-desktop.png", self.prefix)), png).expect("save");
        self.c
            .set_window_size(PHONE.0, PHONE.1)
            .await
            .expect("phone size");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let png = self.c.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{}-{name}-phone.png", self.prefix)), png).expect("save");
        self.c
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .expect("desktop size");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Saves a desktop screenshot only (for states that a resize would disturb).
    async fn shot_desktop(&self, name: &str) {
        let png = self.c.screenshot().await.expect("screenshot");
        std::fs::write(
            shots_dir().join(format!("{}-{name}-desktop.png", self.prefix)),
            png,
        )
        .expect("save");
    }

    async fn close(self) {
        let _ = self.c.close().await;
    }
}

/// Signs up, confirms with the mailed code and logs in, through the pages.
async fn sign_up_in_browser(b: &Browser, srv: &TestServer, email: &str, shots: bool) {
    b.go("/").await;
    b.until_path("/ui/login").await;
    if shots {
        b.shot("login").await;
    }
    b.click("a[href='/ui/signup']").await;
    b.until_path("/ui/signup").await;

    // Mismatched confirmation: the error sits under that field.
    b.fill("#f-email", email).await;
    b.fill("#f-password", PASSWORD).await;
    b.fill("#f-confirm_password", "something-else").await;
    b.click("[data-test=signup-submit]").await;
    let err = b
        .text("[data-error-for=confirm_password]")
        .await
        .to_lowercase();
    assert!(err.contains("does not match"), "{err}");

    // A weak password: the policy's message sits under the password.
    b.fill("#f-password", "short").await;
    b.fill("#f-confirm_password", "short").await;
    b.click("[data-test=signup-submit]").await;
    let err = b.text("[data-error-for=password]").await.to_lowercase();
    assert!(err.contains("must"), "{err}");
    assert_eq!(
        b.find("#f-email")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(email)
    );
    if shots {
        b.shot("signup-errors").await;
    }

    b.fill("#f-password", PASSWORD).await;
    b.fill("#f-confirm_password", PASSWORD).await;
    b.click("[data-test=signup-submit]").await;
    b.until_path("/ui/confirm").await;
    if shots {
        b.shot("confirm").await;
    }

    // A wrong code first.
    let code = srv.mailer.last_code(email).expect("a code was mailed");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    b.fill("#f-code", wrong).await;
    b.click("[data-test=confirm-submit]").await;
    let err = b.text("[data-error-for=code]").await.to_lowercase();
    assert!(err.contains("wrong"), "{err}");

    b.fill("#f-code", &code).await;
    b.click("[data-test=confirm-submit]").await;
    b.until_path("/ui/login").await;
    assert!(b.text(".banner-ok").await.contains("confirmed"));

    // A wrong password shows next to the password field.
    b.fill("#f-password", "Wrong-pass-1!").await;
    b.click("[data-test=login-submit]").await;
    let err = b.text("[data-error-for=password]").await.to_lowercase();
    assert!(err.contains("incorrect"), "{err}");
    if shots {
        b.shot("login-error").await;
    }

    b.fill("#f-password", PASSWORD).await;
    b.click("[data-test=login-submit]").await;
    b.until_path("/ui/instances").await;
}

/// Opens the deploy dialog for gemma3:270m on the catalog page and deploys
/// it on the suggested CPU size; returns the new instance's id.
async fn deploy_gemma_in_browser(b: &Browser, shots: bool) -> String {
    b.go("/ui/models").await;
    b.fill("[data-test=model-search]", "gemma").await;
    b.until(
        "search filters the cards",
        "document.querySelectorAll('[data-model-card]:not([hidden])').length >= 1 && [...document.querySelectorAll('[data-model-card]:not([hidden])')].every(c => c.dataset.search.includes('gemma'))",
        5,
    )
    .await;
    if shots {
        b.shot("models-search").await;
        b.fill("[data-test=model-search]", "").await;
        b.until(
            "all cards back",
            "document.querySelectorAll('[data-model-card][hidden]').length == 0",
            5,
        )
        .await;
        b.shot("models").await;
    }
    b.click("[data-test='deploy-gemma3:270m']").await;
    b.until(
        "the dialog opens",
        "document.getElementById('deploy-dialog').open",
        5,
    )
    .await;
    let fit = b.text("[data-d=fit]").await;
    assert!(fit.contains("Fits"), "{fit}");
    // It says when the deploy downloads the model first, as the card does.
    let downloads = b
        .js("return document.querySelector(\"[data-model-card]:has([data-test='deploy-gemma3:270m']) [data-test=availability]\").textContent.includes('Downloads')")
        .await;
    assert_eq!(
        b.js("return !document.querySelector('[data-test=deploy-download]').hidden")
            .await,
        downloads
    );
    if downloads == true {
        let note = b.text("[data-test=deploy-download]").await;
        assert!(note.contains("downloads 0.25 GB"), "{note}");
    }
    let price = b.text("[data-d=price]").await;
    assert!(price.contains("/ hour"), "{price}");
    // This server's driver has no GPU: the GPU tab is off and says why,
    // and the CPU sizes are this machine's, not Fargate's.
    assert_eq!(
        b.js("return document.querySelector('[data-test=deploy-gpu-tab]').disabled")
            .await,
        true
    );
    assert!(b
        .text("[data-test=gpu-unavailable]")
        .await
        .contains("no GPU"));
    let hint = b.text(".size-hint").await;
    assert!(
        hint.starts_with("CPU size") && !hint.contains("Fargate"),
        "{hint}"
    );
    // Two steps: vCPUs, then the memory sizes valid with them; the
    // smallest size the model fits (1 GB) is chosen to begin with.
    assert_eq!(
        b.js("return document.getElementById('d-vcpu').value").await,
        "0.25"
    );
    assert_eq!(
        b.js("return document.getElementById('d-memory').value")
            .await,
        "1024"
    );
    b.js("const v = document.getElementById('d-vcpu'); v.value = '1'; v.dispatchEvent(new Event('change', {bubbles: true})); return 1")
        .await;
    let memories = b
        .js("return [...document.querySelectorAll('#d-memory option')].map(o => Number(o.value))")
        .await;
    assert_eq!(
        memories,
        serde_json::json!([2048, 3072, 4096, 5120, 6144, 7168, 8192])
    );
    assert_eq!(
        b.js("return document.getElementById('d-memory').value")
            .await,
        "2048"
    );
    // A bad idle timeout is reported under its field, and cleared when
    // the field changes.
    b.js("const i = document.getElementById('d-idle'); i.value = '99999'; return 1")
        .await;
    b.click("[data-test=deploy-submit]").await;
    b.until(
        "the idle timeout's error under it",
        "(() => { const p = document.querySelector('[data-error-for=idle_timeout_minutes]'); return !p.hidden && /^At most/.test(p.textContent); })()",
        10,
    )
    .await;
    if shots {
        b.shot_desktop("deploy-dialog-error").await;
    }
    b.fill("#d-idle", "15").await;
    assert_eq!(
        b.js("return document.querySelector('[data-error-for=idle_timeout_minutes]').hidden")
            .await,
        true
    );
    b.fill("[data-test=deploy-name]", "browser box").await;
    if shots {
        b.shot("deploy-dialog").await;
    }
    b.click("[data-test=deploy-submit]").await;
    b.until_path("/ui/instances?deployed=").await;
    let path = b.path().await;
    path.split("deployed=")
        .nth(1)
        .expect("instance id")
        .to_owned()
}

/// What works without a model server: accounts, catalog, deploy, live
/// status, instance detail, keys, usage, chat's empty state, logout.
/// Every element with text of its own whose colour has less than 4.5:1
/// contrast (WCAG AA) against the background it is drawn on (the nearest
/// opaque background colour up its ancestors), as "tag.class: ratio".
const LOW_CONTRAST_JS: &str = r#"
const lum = (c) => {
  const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
  const [r, g, b, a] = m[1].split(',').map(Number);
  const ch = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return { l: 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2], a: a === undefined ? 1 : a };
};
const bg = (el) => {
  for (let e = el; e; e = e.parentElement) {
    const c = lum(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0.5) return c.l;
  }
  return lum(getComputedStyle(document.documentElement).backgroundColor)?.l ?? 1;
};
const bad = [];
for (const el of document.querySelectorAll('body *')) {
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own || !el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
  if (el.closest('svg, [hidden], .sr-only, option')) continue;
  const fg = lum(getComputedStyle(el).color); if (!fg) continue;
  const b = bg(el);
  const ratio = (Math.max(fg.l, b) + 0.05) / (Math.min(fg.l, b) + 0.05);
  if (ratio < 4.5) bad.push(`${el.tagName.toLowerCase()}.${el.className}: ${ratio.toFixed(2)} "${el.textContent.trim().slice(0, 30)}"`);
}
return bad;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_themes_keep_text_readable() {
    let _guard = BROWSER_LOCK.lock().await;
    let srv = TestServer::start().await;
    for (theme, flags) in [
        ("light", vec!["--blink-settings=preferredColorScheme=1"]),
        ("dark", vec!["--blink-settings=preferredColorScheme=0"]),
    ] {
        let b = Browser::open_with(&srv.url, theme, &flags).await;
        sign_up_in_browser(&b, &srv, &format!("{theme}@example.com"), false).await;
        let dark = b
            .js("return matchMedia('(prefers-color-scheme: dark)').matches")
            .await;
        assert_eq!(dark, json!(theme == "dark"), "{theme}");
        deploy_gemma_in_browser(&b, false).await;
        for path in [
            "/ui/instances",
            "/ui/models",
            "/ui/keys",
            "/ui/usage",
            "/ui/chat",
        ] {
            b.go(path).await;
            b.find("h1").await;
            let bad = b.js(LOW_CONTRAST_JS).await;
            assert_eq!(bad, json!([]), "{theme} {path}");
            b.shot(path.trim_start_matches("/ui/")).await;
        }
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_from_sign_up_to_logout() {
    let _guard = BROWSER_LOCK.lock().await;
    let srv = TestServer::start().await;
    let b = Browser::open(&srv.url, "flow").await;
    let email = "ana@example.com";

    // Signed out, pages redirect to the login page and keep where to go.
    b.go("/ui/keys").await;
    b.until_path("/ui/login?next=").await;

    sign_up_in_browser(&b, &srv, email, true).await;
    assert!(b.text("h1").await.contains("Instances"));
    b.shot("instances-empty").await;

    let id = deploy_gemma_in_browser(&b, true).await;
    let row = format!("tr[data-instance='{id}']");
    b.find(&row).await;
    // Mark the page; the status must change while the mark stays (no reload).
    b.js("window.__paddockMark = 1; return 1").await;
    let first = b.text(&format!("{row} [data-f=status]")).await;
    assert!(
        ["PENDING", "STARTING"].contains(&first.as_str()) || first.starts_with("restarting ("),
        "{first}"
    );
    // This server has no runtime binary, so the launch fails: while the
    // reconciler retries, the row says so rather than FAILED, then FAILED
    // shows up live with its reason once the restarts are spent.
    b.until(
        "a restart to be announced",
        &format!("document.querySelector(\"{row} [data-f=status]\").textContent.startsWith('restarting (') && window.__paddockMark === 1"),
        30,
    )
    .await;
    b.until(
        "the status to change live",
        &format!("document.querySelector(\"{row} [data-f=status]\").textContent == 'FAILED' && window.__paddockMark === 1"),
        30,
    )
    .await;
    let reason = b.text(&format!("{row} [data-f=reason]")).await;
    assert!(!reason.is_empty(), "a failure reason is shown");
    // However long the reason (a log of three restarts), the row stays one
    // line high; the whole text is its title.
    let height = b
        .js(&format!(
            "const el = document.querySelector(\"{row} [data-f=reason]\"); const was = el.textContent; \
             el.textContent = 'restart 1 of 3: model gemma3:270m not found in the local store\\n'.repeat(40); \
             const h = document.querySelector(\"{row}\").getBoundingClientRect().height; \
             el.textContent = was; return [h, el.title == was];"
        ))
        .await;
    assert!(
        height[0].as_f64().unwrap() < 120.0 && height[1] == true,
        "{height}"
    );
    assert!(b
        .text(&format!("{row} .copyable code"))
        .await
        .contains(&format!("/models/{id}")));
    b.shot("instances").await;

    // Detail page: history and logs panel.
    b.click(&format!("{row} a.strong")).await;
    b.until_path(&format!("/ui/instances/{id}")).await;
    b.until(
        "history entries",
        "document.querySelectorAll('[data-f=history] li').length >= 2",
        10,
    )
    .await;
    b.until("the logs panel settles", "!document.querySelector('[data-logs]').textContent.startsWith('Loading') && document.querySelector('[data-logs]').textContent.length > 0", 10).await;
    // The history's times carry seconds: a start takes a few.
    let when = b.text("[data-f=history] li time").await;
    assert!(
        when.split(':').count() == 3,
        "no seconds in the history time {when:?}"
    );
    b.shot("instance-detail").await;

    // Stop it from the detail page; the badge follows without reload.
    b.js("window.confirm = () => true; window.__paddockMark = 2; return 1")
        .await;
    b.click("[data-live-instance] [data-action=stop]").await;
    b.until(
        "STOPPED",
        "document.querySelector('[data-live-instance] [data-f=status]').textContent == 'STOPPED' && window.__paddockMark === 2",
        15,
    )
    .await;

    // Chat with no running instance: a clear empty state.
    b.go("/ui/chat").await;
    assert!(b
        .text(".card.empty h2")
        .await
        .contains("No running instance"));
    b.shot("chat-empty").await;

    // API keys: create (secret shown once), listed, snippets, revoke.
    b.go("/ui/keys").await;
    b.shot("keys-empty").await;
    b.fill("[data-test=key-name]", "laptop").await;
    b.click("[data-test=key-create]").await;
    let secret = b.text("[data-test=new-key] code").await;
    assert!(secret.starts_with("pdk_"), "{secret}");
    let curl = b.text("[data-test=snippet-curl]").await;
    assert!(
        curl.contains(&secret) && curl.contains(&format!("{}/api/chat", srv.url)),
        "{curl}"
    );
    b.click("[data-tab=openai]").await;
    let openai = b.text("[data-test=snippet-openai]").await;
    assert!(
        openai.contains(&format!("base_url=\"{}/v1\"", srv.url)),
        "{openai}"
    );
    b.click("[data-tab=ollama]").await;
    assert!(b
        .text("[data-test=snippet-ollama]")
        .await
        .contains("Authorization"));
    assert!(b.text("[data-test=keys-table]").await.contains("laptop"));
    b.shot("keys-created").await;
    // The key works against the API.
    let (s, me) = srv.get("/api/auth/me", &secret).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    // Reloading does not show the secret again.
    b.go("/ui/keys").await;
    assert!(!b
        .js("return document.body.innerText")
        .await
        .as_str()
        .unwrap()
        .contains(&secret));
    // Without a secret to show, the snippets read the key from the
    // environment, and work as given: run with PADDOCK_API_KEY set, each
    // Python one is let in (the 404 is "no running instance", not a 401).
    assert!(b
        .text("[data-test=snippet-env]")
        .await
        .contains("PADDOCK_API_KEY"));
    let curl = b.text("[data-test=snippet-curl]").await;
    assert!(curl.contains("Bearer $PADDOCK_API_KEY\""), "{curl}");
    let python = std::env::var("PADDOCK_TEST_PYTHON")
        .expect("PADDOCK_TEST_PYTHON is not set: run `eval \"$(scripts/test-assets)\"` (scripts/test does it)");
    for tab in ["openai", "ollama"] {
        b.click(&format!("[data-tab={tab}]")).await;
        let code = b.text(&format!("[data-test=snippet-{tab}]")).await;
        assert!(
            code.contains("os.environ[\"PADDOCK_API_KEY\"]") && !code.contains('$'),
            "{code}"
        );
        let run = std::process::Command::new(&python)
            .args(["-c", &code])
            .env("PADDOCK_API_KEY", &secret)
            .output()
            .expect("running the snippet");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            !run.status.success() && err.contains("404") && !err.contains("401"),
            "{tab}: {err}"
        );
    }
    b.js("window.confirm = () => true; return 1").await;
    b.click("[data-test=key-revoke]").await;
    b.until_path("/ui/keys?revoked=1").await;
    assert!(b.text("[data-test=keys-table]").await.contains("revoked"));
    let (s, _) = srv.get("/api/auth/me", &secret).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    b.shot("keys-revoked").await;

    b.go("/ui/usage").await;
    b.find("[data-test=usage-requests]").await;
    b.shot("usage").await;

    // Admin pages are refused to a plain user.
    b.go("/ui/admin/users").await;
    assert!(b.text("h2").await.contains("Administrators only"));

    // Log out: back to the login page, and pages redirect again.
    b.go("/ui/instances").await;
    b.click("[data-test=logout]").await;
    b.until_path("/ui/login").await;
    b.go("/ui/instances").await;
    b.until_path("/ui/login").await;

    b.close().await;
    srv.shutdown().await;
}

/// Admin pages, and a user an admin created choosing their password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_pages_and_forced_new_password() {
    let _guard = BROWSER_LOCK.lock().await;
    let srv = TestServer::start().await;
    let b = Browser::open(&srv.url, "admin").await;

    b.go("/ui/login").await;
    b.fill("#f-email", ADMIN_EMAIL).await;
    b.fill("#f-password", ADMIN_PASSWORD).await;
    b.click("[data-test=login-submit]").await;
    b.until_path("/ui/instances").await;

    // Users: create one; the temporary password is shown once.
    b.go("/ui/admin/users").await;
    b.fill("#f-email", "bo@example.com").await;
    b.click("[data-test=user-create]").await;
    let temp = b.text("[data-test=new-user] code").await;
    assert!(!temp.is_empty());
    b.shot("users").await;
    // A duplicate shows an error next to the email field.
    b.fill("#f-email", "bo@example.com").await;
    b.click("[data-test=user-create]").await;
    assert!(b
        .text("[data-error-for=email]")
        .await
        .to_lowercase()
        .contains("already exists"));

    // Promote, then demote, disable and enable bo; disabling asks first.
    for label in ["Promote", "Demote", "Disable", "Enable"] {
        b.js("window.confirm = (m) => { sessionStorage.setItem('asked', (sessionStorage.getItem('asked') || '') + m + '|'); return true; }; return 1")
            .await;
        let clicked = b
            .js(&format!(
                "const row = [...document.querySelectorAll('[data-test=users-table] tr')].find(r => r.textContent.includes('bo@example.com'));
                 const btn = [...row.querySelectorAll('button')].find(x => x.textContent.trim() == '{label}');
                 if (!btn) return false; btn.click(); return true;"
            ))
            .await;
        assert_eq!(clicked, Value::Bool(true), "{label} button");
        b.until_path("/ui/admin/users?done=1").await;
        b.find(".banner-ok").await;
    }
    let (s, users) = srv.get("/api/users", &srv.admin_token().await).await;
    assert_eq!(s, StatusCode::OK);
    let bo = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "bo@example.com")
        .unwrap()
        .clone();
    assert_eq!(bo["role"], "user");
    assert_eq!(bo["disabled"], false);
    let asked = b.js("return sessionStorage.getItem('asked') || ''").await;
    let asked = asked.as_str().unwrap();
    assert!(
        asked.starts_with("Disable bo@example.com?") && asked.matches('|').count() == 1,
        "{asked}"
    );

    // Catalog editor: edit, a bad value named at its field, deactivate.
    b.go("/ui/admin/models").await;
    b.shot("catalog").await;
    b.go("/ui/admin/models/gemma3:270m").await;
    // Every bad field at once, each under its input.
    b.fill("#f-model_size_gb", "").await;
    b.fill("#f-cpu_vcpu", "").await;
    b.click("[data-test=model-save]").await;
    for f in ["model_size_gb", "cpu_vcpu"] {
        assert_eq!(
            b.text(&format!("[data-error-for={f}]")).await,
            "Must be a non-negative number"
        );
    }
    b.fill("#f-cpu_vcpu", "1").await;
    b.fill("#f-model_size_gb", "0.3").await;
    b.fill("#f-description", "Tiny Gemma for tests").await;
    b.shot("catalog-edit").await;
    b.click("[data-test=model-save]").await;
    b.until_path("/ui/admin/models?done=1").await;
    let tok = srv.admin_token().await;
    let (_, m) = srv.get("/api/models/gemma3:270m", &tok).await;
    assert_eq!(m["description"], "Tiny Gemma for tests");
    b.go("/ui/admin/models/new").await;
    b.shot("catalog-new").await;

    // All instances, with owners.
    let user = srv.user_token("cy@example.com").await;
    srv.post(
        "/api/models/deploy",
        Some(&user),
        json!({"model_name": "gemma3:270m", "fargate_resources": {"cpu": 1024, "memory": 2048}}),
    )
    .await;
    b.go("/ui/admin/instances").await;
    b.until(
        "cy's instance",
        "document.body.innerText.includes('cy@example.com')",
        10,
    )
    .await;
    b.shot("all-instances").await;
    // At 1280 px every column (cost too) and button fits: no sideways scroll.
    let fits = b
        .js("const c = document.querySelector('.table-card'); return [c.scrollWidth, c.clientWidth]")
        .await;
    assert!(
        fits[0].as_u64() <= fits[1].as_u64(),
        "table {fits} wider than its card"
    );

    // Delete cy (asked first): their instance stops, and the owner column
    // says the account is gone.
    b.go("/ui/admin/users").await;
    b.js("window.confirm = () => true; return 1").await;
    b.js("[...document.querySelectorAll('[data-test=users-table] tr')].find(r => r.textContent.includes('cy@example.com')).querySelector('[data-test=user-delete]').click(); return 1")
        .await;
    b.until(
        "the delete notice",
        "(document.querySelector('.banner-ok') || {}).textContent?.includes('Deleted cy@example.com: 1 instance(s) stopped')",
        10,
    )
    .await;
    b.go("/ui/admin/instances").await;
    b.until(
        "the deleted owner",
        "document.body.innerText.includes('deleted user')",
        10,
    )
    .await;

    // bo logs in with the temporary password and must choose a new one.
    b.click("[data-test=logout]").await;
    b.until_path("/ui/login").await;
    b.fill("#f-email", "bo@example.com").await;
    b.fill("#f-password", &temp).await;
    b.click("[data-test=login-submit]").await;
    b.find("[data-test=new-password-submit]").await;
    b.fill("#f-new_password", "weak").await;
    b.fill("#f-confirm_password", "weak").await;
    b.click("[data-test=new-password-submit]").await;
    assert!(b
        .text("[data-error-for=new_password]")
        .await
        .to_lowercase()
        .contains("must"));
    b.shot("new-password").await;
    b.fill("#f-new_password", "N3w-password!").await;
    b.fill("#f-confirm_password", "N3w-password!").await;
    b.click("[data-test=new-password-submit]").await;
    b.until_path("/ui/instances").await;
    srv.login("bo@example.com", "N3w-password!").await;

    b.close().await;
    srv.shutdown().await;
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

fn cookie_value(cookies: &[String], name: &str) -> String {
    cookies
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
        .to_owned()
}

/// Forms and cookie-authenticated API calls need the CSRF token; bearer
/// calls do not. Cookies carry HttpOnly and SameSite.
#[tokio::test]
async fn csrf_and_cookie_flags() {
    let srv = TestServer::start().await;
    srv.user("dee@example.com").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The login page issues a CSRF cookie and embeds the same token.
    let resp = http
        .get(format!("{}/ui/login", srv.url))
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(&resp);
    let csrf = cookie_value(&cookies, "paddock_csrf");
    assert!(cookies[0].contains("HttpOnly") && cookies[0].contains("SameSite=Strict"));
    assert!(
        !cookies[0].contains("Secure"),
        "no Secure flag on plain http"
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains(&format!("name=\"csrf\" value=\"{csrf}\"")));

    // A form post without the token (or with a wrong one) is refused.
    let form = [("email", "dee@example.com"), ("password", PASSWORD)];
    let r = http
        .post(format!("{}/ui/login", srv.url))
        .header("cookie", format!("paddock_csrf={csrf}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(format!("{}/ui/login", srv.url))
        .form(&[
            ("email", "dee@example.com"),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no cookie to match");

    // With the token the login works and sets the session cookies.
    let r = http
        .post(format!("{}/ui/login", srv.url))
        .header("cookie", format!("paddock_csrf={csrf}"))
        .form(&[
            ("email", "dee@example.com"),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookies = set_cookies(&r);
    let session = cookie_value(&cookies, "paddock_session");
    let csrf = cookie_value(&cookies, "paddock_csrf");
    for c in &cookies {
        assert!(c.contains("HttpOnly") && c.contains("SameSite="), "{c}");
    }
    assert!(cookies
        .iter()
        .any(|c| c.starts_with("paddock_refresh=") && c.contains("Path=/ui;")));
    let jar = format!("paddock_session={session}; paddock_csrf={csrf}");

    // Cookie GETs work without the header.
    let r = http
        .get(format!("{}/api/instances", srv.url))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Cookie POSTs need X-CSRF-Token.
    let body = json!({"name": "k"});
    let r = http
        .post(format!("{}/api/keys", srv.url))
        .header("cookie", &jar)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(format!("{}/api/keys", srv.url))
        .header("cookie", &jar)
        .header("x-csrf-token", "forged")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(format!("{}/api/keys", srv.url))
        .header("cookie", &jar)
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A page form without the token is refused too.
    let r = http
        .post(format!("{}/ui/keys", srv.url))
        .header("cookie", &jar)
        .form(&[("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Bearer calls need no CSRF token.
    let (s, _) = srv
        .post("/api/keys", Some(&session), json!({"name": "bearer"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // Static assets are cached; pages are not.
    let r = http
        .get(format!("{}/ui/static/app.css", srv.url))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let r = http
        .get(format!("{}/ui/static/app.js", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // `/` goes to the login page when signed out.
    let r = http.get(format!("{}/", srv.url)).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/ui/login");
    srv.shutdown().await;
}

/// The `paddock` binary the full flow runs models with: `PADDOCK_BIN`, or
/// the workspace's build next to this test binary.
fn paddock_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PADDOCK_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let debug = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = debug.join("paddock");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p paddock-cli` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// The whole story with a real model: sign up, confirm, log in, deploy
/// gemma3:270m on CPU (not on the host yet: it is downloaded from a fake
/// registry first, its progress shown), see it become RUNNING without
/// reloading, chat with streamed output, create an API key, stop the
/// instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_with_a_running_model() {
    let _guard = BROWSER_LOCK.lock().await;
    let registry = registry_with_test_model().await;
    let size = std::fs::metadata(test_model_file()).unwrap().len();
    registry.hold_at(size * 2 / 5);
    let srv = TestServer::start_pulling(&paddock_bin(), &registry.url).await;
    let b = Browser::open(&srv.url, "model").await;
    let email = "eve@example.com";
    sign_up_in_browser(&b, &srv, email, false).await;

    // The catalog says the model is not here, and what the first deploy
    // downloads.
    b.go("/ui/models").await;
    let card = "[data-model-card]:has([data-test='deploy-gemma3:270m']) [data-test=availability]";
    assert_eq!(b.text(card).await, "↓ Downloads 0.25 GB on first deploy");
    let id = deploy_gemma_in_browser(&b, false).await;
    let row = format!("tr[data-instance='{id}']");
    b.find(&row).await;
    b.js("window.__paddockMark = 1; return 1").await;
    // PULLING with its percent and bytes, live, in the list and on the
    // instance's page.
    b.until(
        "the download at 40% without reload",
        &format!("document.querySelector(\"{row} [data-f=status]\").textContent == 'pulling 40%' && !document.querySelector(\"{row} [data-f=pull]\").hidden && window.__paddockMark === 1"),
        60,
    )
    .await;
    let bytes = b.text(&format!("{row} [data-f=pull-bytes]")).await;
    assert!(bytes.ends_with("of 253.1 MB"), "{bytes}");
    b.shot("instances-pulling").await;
    b.go(&format!("/ui/instances/{id}")).await;
    b.until(
        "the download on the instance's page",
        "document.querySelector('[data-live-instance] [data-f=status]').textContent == 'pulling 40%' && !document.querySelector('[data-live-instance] [data-f=pull]').hidden",
        20,
    )
    .await;
    b.shot("instance-detail-pulling").await;
    b.go("/ui/instances").await;
    b.find(&row).await;
    b.js("window.__paddockMark = 1; return 1").await;
    registry.release();
    b.until(
        "RUNNING without reload",
        &format!("document.querySelector(\"{row} [data-f=status]\").textContent == 'RUNNING' && window.__paddockMark === 1 && document.querySelector(\"{row} [data-f=pull]\").hidden"),
        240,
    )
    .await;
    b.shot("instances-running").await;
    // That came by server-sent events: the page never polled the list.
    assert_eq!(b.js("return window.__paddockLive").await, "sse");
    let polled = b
        .js("return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/api/instances') && !n.includes('/api/instances/events'))")
        .await;
    assert_eq!(polled, serde_json::json!([]), "{polled}");

    // The test model is a base model with no chat template: the
    // playground opens in Complete mode, says why, and the model continues
    // the text.
    b.click(&format!("{row} [data-a=chat]")).await;
    b.until_path("/ui/chat").await;
    b.until(
        "Complete mode",
        "document.querySelector('[data-test=mode-complete]').checked && !document.querySelector('[data-test=mode-note]').hidden",
        20,
    )
    .await;
    assert!(b
        .text("[data-test=mode-note]")
        .await
        .contains("no chat template"));
    assert!(b
        .js("return document.getElementById('c-system').closest('[data-chat-only]').hidden")
        .await
        .as_bool()
        .unwrap());
    b.fill("[data-test=chat-max]", "12").await;
    b.fill("[data-test=chat-input]", "The capital of France is")
        .await;
    b.click("[data-test=chat-send]").await;
    b.until(
        "the continuation",
        "(() => { const c = document.querySelector('[data-test=completion]'); return c && c.textContent.trim().length > 0 && !document.querySelector('.msg.streaming'); })()",
        120,
    )
    .await;
    let doc = b.text(".msg-completion").await;
    assert!(
        doc.starts_with("The capital of France is") && doc.len() > 25,
        "{doc}"
    );
    // The box holds the whole text, ready to continue.
    assert!(b
        .js("return document.querySelector('.msg-completion').textContent === document.querySelector('[data-test=chat-input]').value")
        .await
        .as_bool()
        .unwrap());
    b.shot("chat-complete").await;

    // Chat is one click away: streamed text appears and tokens/s is shown.
    b.click("[data-test=mode-chat] + span").await;
    b.fill("#c-system", "You are terse.").await;
    b.fill("[data-test=chat-max]", "40").await;
    b.fill("[data-test=chat-input]", "Say hello in three words.")
        .await;
    b.click("[data-test=chat-send]").await;
    // Streaming: the reply grows while the bubble is still marked streaming.
    b.until(
        "streamed text",
        "(() => { const m = document.querySelector('.msg-assistant'); return m && m.textContent.length > 0; })()",
        120,
    )
    .await;
    b.until(
        "the reply to finish",
        "!document.querySelector('.msg-assistant.streaming')",
        120,
    )
    .await;
    let stats = b.text("[data-test=chat-stats]").await;
    assert!(stats.contains("tokens/s"), "{stats}");
    assert!(!b.text(".msg-assistant").await.trim().is_empty());
    b.shot("chat").await;

    // Detail page shows logs from the runtime.
    b.go(&format!("/ui/instances/{id}")).await;
    b.until(
        "log lines",
        "document.querySelector('[data-logs]').textContent.split('\\n').length > 2",
        20,
    )
    .await;
    b.shot("instance-detail-running").await;
    // The filter keeps the lines with its text; the download has them all.
    b.fill("[data-test=logs-filter]", "launching").await;
    let shown = b
        .js("return document.querySelector('[data-logs]').textContent.split('\\n')")
        .await;
    let shown: Vec<&str> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        !shown.is_empty() && shown.iter().all(|l| l.to_lowercase().contains("launching")),
        "{shown:?}"
    );
    let download = b
        .js("const a = document.querySelector('[data-test=logs-download]'); const x = new XMLHttpRequest(); x.open('GET', a.href, false); x.send(); return [x.status, x.getResponseHeader('content-disposition'), x.responseText.split('\\n').length]")
        .await;
    assert_eq!(download[0], 200, "{download}");
    assert!(download[1].as_str().unwrap().contains(&format!("{id}.log")));
    assert!(download[2].as_u64().unwrap() > 2, "{download}");
    // How to call this instance: its own endpoint, with the key from the
    // environment.
    let curl = b
        .js("return document.querySelector('[data-test=snippet-curl]').textContent")
        .await;
    assert!(
        curl.as_str()
            .unwrap()
            .contains(&format!("/models/{id}/api/chat")),
        "{curl}"
    );

    // An API key.
    b.go("/ui/keys").await;
    b.fill("[data-test=key-name]", "script").await;
    b.click("[data-test=key-create]").await;
    assert!(b.text("[data-test=new-key] code").await.starts_with("pdk_"));

    // Usage now has the chat request.
    b.go("/ui/usage").await;
    b.until(
        "usage counted",
        "document.querySelector('[data-test=usage-requests]').textContent != '0'",
        5,
    )
    .await;
    b.go("/ui/usage").await;
    // Local CPU is priced at $0 here, and the page says so; the token
    // chart's ticks are whole, round numbers.
    assert!(b
        .text("[data-test=cost-zero-note]")
        .await
        .contains("local CPU"));
    let ticks = b
        .js("return [...document.querySelectorAll('svg.chart')[0].querySelectorAll('[data-test=axis-tick]')].map(t => t.textContent)")
        .await;
    let ticks: Vec<&str> = ticks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        ticks.len() >= 2 && ticks.iter().all(|t| t.chars().all(|c| c.is_ascii_digit())),
        "{ticks:?}"
    );
    b.shot("usage-with-data").await;

    // The catalog has the model on this host now.
    b.go("/ui/models").await;
    assert_eq!(b.text(card).await, "✓ On this host");

    // Stop from the list; STOPPED shows without reload.
    b.go("/ui/instances").await;
    b.js("window.confirm = () => true; window.__paddockMark = 3; return 1")
        .await;
    b.click(&format!("{row} [data-action=stop]")).await;
    b.until(
        "STOPPED",
        &format!("document.querySelector(\"{row} [data-f=status]\").textContent == 'STOPPED' && window.__paddockMark === 3"),
        60,
    )
    .await;
    b.shot("instances-stopped").await;

    // Start it again from the list: the same row runs again.
    b.until(
        "the Start button",
        &format!("!document.querySelector(\"{row} [data-action=start]\").hidden"),
        10,
    )
    .await;
    b.click(&format!("{row} [data-action=start]")).await;
    b.until(
        "RUNNING again without reload",
        &format!("document.querySelector(\"{row} [data-f=status]\").textContent == 'RUNNING' && window.__paddockMark === 3"),
        240,
    )
    .await;
    assert!(b
        .js(&format!(
            "return document.querySelector(\"{row} [data-action=start]\").hidden"
        ))
        .await
        .as_bool()
        .unwrap());
    b.click(&format!("{row} [data-action=stop]")).await;
    b.until(
        "STOPPED again",
        &format!("document.querySelector(\"{row} [data-f=status]\").textContent == 'STOPPED'"),
        60,
    )
    .await;

    b.close().await;
    srv.shutdown().await;
}

/// Logs `email` in through the login form; returns the cookie header of
/// the session and its CSRF token.
async fn web_session(srv: &TestServer, http: &reqwest::Client, email: &str) -> (String, String) {
    let resp = http
        .get(format!("{}/ui/login", srv.url))
        .send()
        .await
        .unwrap();
    let csrf = cookie_value(&set_cookies(&resp), "paddock_csrf");
    let r = http
        .post(format!("{}/ui/login", srv.url))
        .header("cookie", format!("paddock_csrf={csrf}"))
        .form(&[("email", email), ("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "login of {email}");
    let cookies = set_cookies(&r);
    let session = cookie_value(&cookies, "paddock_session");
    let csrf = cookie_value(&cookies, "paddock_csrf");
    (
        format!("paddock_session={session}; paddock_csrf={csrf}"),
        csrf,
    )
}

/// A plain user reaches no admin operation, neither through the JSON API
/// nor through the web pages, and nothing an admin owns changes: both
/// doors get the admin operations only from `Control::as_admin`.
#[tokio::test]
async fn a_plain_user_reaches_no_admin_operation_through_either_door() {
    let srv = TestServer::start().await;
    let admin = srv.admin_token().await;
    let user = srv.user_token("plain@example.com").await;
    let admin_instance = srv.deploy_gemma(&admin, 0.0).await;
    let (_, users) = srv.get("/api/users", &admin).await;
    let admin_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == ADMIN_EMAIL)
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forbidden = |st: StatusCode, what: &str| assert_eq!(st, StatusCode::FORBIDDEN, "{what}");

    // The JSON API.
    let (st, _) = srv.get("/api/users", &user).await;
    forbidden(st, "GET /api/users");
    let (st, _) = srv
        .post(
            "/api/users",
            Some(&user),
            json!({"email": "mallory@example.com"}),
        )
        .await;
    forbidden(st, "POST /api/users");
    let (st, _) = srv
        .call(
            Method::PATCH,
            &format!("/api/users/{admin_id}"),
            Some(&user),
            Some(json!({"disabled": true})),
        )
        .await;
    forbidden(st, "PATCH /api/users/{id}");
    let (st, _) = srv
        .post(
            "/api/models",
            Some(&user),
            json!({"model_id": "evil:1b", "model_name": "Evil", "model_family": "x", "model_size_gb": 1.0,
                   "cpu_requirements": {"vcpu": 1, "memory_mb": 2048},
                   "gpu_requirements": {"gpu_memory_mb": 2048, "gpu_type": "any"},
                   "description": "", "supported_tasks": ["chat"], "is_active": true}),
        )
        .await;
    forbidden(st, "POST /api/models");
    let (st, _) = srv
        .call(
            Method::PATCH,
            "/api/models/gemma3:270m",
            Some(&user),
            Some(json!({"is_active": false})),
        )
        .await;
    forbidden(st, "PATCH /api/models/{id}");
    let (st, v) = srv.get("/api/instances?all=true", &user).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v["instances"],
        json!([]),
        "all=true shows a user only their own"
    );
    let (st, _) = srv
        .get(&format!("/api/instances/{admin_instance}"), &user)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = srv.get("/api/usage?all=true", &user).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["totals"]["requests"], 0);

    // The web pages, with the user's session cookie and CSRF token.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (jar, csrf) = web_session(&srv, &http, "plain@example.com").await;
    for page in [
        "/ui/admin/users",
        "/ui/admin/models",
        "/ui/admin/models/new",
        "/ui/admin/models/gemma3:270m",
        "/ui/admin/instances",
    ] {
        let r = http
            .get(format!("{}{page}", srv.url))
            .header("cookie", &jar)
            .send()
            .await
            .unwrap();
        forbidden(r.status(), page);
    }
    let posts: [(String, Vec<(&str, &str)>); 5] = [
        (
            "/ui/admin/users".into(),
            vec![("email", "mallory@example.com"), ("role", "admin")],
        ),
        (
            format!("/ui/admin/users/{admin_id}"),
            vec![("disabled", "true")],
        ),
        (
            "/ui/admin/models/new".into(),
            vec![("model_id", "evil:1b"), ("model_name", "Evil")],
        ),
        (
            "/ui/admin/models/gemma3:270m".into(),
            vec![("model_name", "Renamed")],
        ),
        (
            "/ui/admin/models/gemma3:270m/active".into(),
            vec![("active", "false")],
        ),
    ];
    for (path, fields) in &posts {
        let mut form = fields.clone();
        form.push(("csrf", &csrf));
        let r = http
            .post(format!("{}{path}", srv.url))
            .header("cookie", &jar)
            .form(&form)
            .send()
            .await
            .unwrap();
        forbidden(r.status(), path);
    }
    let r = http
        .get(format!("{}/ui/instances?all=true", srv.url))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.text().await.unwrap().contains(&admin_instance));
    let r = http
        .get(format!("{}/ui/instances/{admin_instance}", srv.url))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Nothing changed: no new user, the admin still enabled, no new model,
    // the catalog's model untouched.
    let (_, users) = srv.get("/api/users", &admin).await;
    let users = users["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert!(users.iter().all(|u| u["disabled"] == false));
    let (st, _) = srv.get("/api/models/evil:1b", &admin).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, m) = srv.get("/api/models/gemma3:270m", &admin).await;
    assert_eq!(m["is_active"], true);
    assert_ne!(m["model_name"], "Renamed");
}

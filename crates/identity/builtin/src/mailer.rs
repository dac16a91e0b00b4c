//! Sending confirmation codes. The default [`LogMailer`] writes
//! `confirmation code for <email>: <code>` to the server log, which is what
//! a single-machine install needs; an SMTP mailer can implement [`Mailer`]
//! later. The code is meant for the user, so logging it is its delivery,
//! not a leak (passwords and tokens are never logged).

use std::sync::Mutex;

/// Delivers confirmation codes.
pub trait Mailer: Send + Sync + std::fmt::Debug {
    fn send_confirmation(&self, email: &str, code: &str);
}

/// Writes codes to the log (stderr).
#[derive(Debug, Default)]
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send_confirmation(&self, email: &str, code: &str) {
        tracing::info!(target: "paddock::mailer", "confirmation code for {email}: {code}");
    }
}

/// Keeps codes in memory (for tests and embedders) and logs them too.
#[derive(Debug, Default)]
pub struct MemoryMailer {
    sent: Mutex<Vec<(String, String)>>,
}

impl MemoryMailer {
    /// The last code sent to `email`.
    pub fn last_code(&self, email: &str) -> Option<String> {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.iter()
            .rev()
            .find(|(e, _)| e == email)
            .map(|(_, c)| c.clone())
    }
}

impl Mailer for MemoryMailer {
    fn send_confirmation(&self, email: &str, code: &str) {
        LogMailer.send_confirmation(email, code);
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((email.to_owned(), code.to_owned()));
    }
}

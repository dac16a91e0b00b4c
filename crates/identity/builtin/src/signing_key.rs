//! The JWT signing key, generated at first start and kept on disk with
//! mode 0600.

use rand::RngCore;
use std::io::Write;
use std::path::Path;

/// Reads the 32-byte signing key at `path`, creating it (mode 0600) on
/// first start.
pub fn load_or_create_key(path: &Path) -> std::io::Result<Vec<u8>> {
    if let Ok(existing) = std::fs::read(path) {
        if existing.len() >= 32 {
            return Ok(existing);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut key = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(&key)?;
    f.sync_all()?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_pass_policy() {
        for _ in 0..50 {
            crate::password::check_policy(&paddock_core::secret::generated_password()).unwrap();
        }
    }

    #[test]
    fn signing_key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secrets/jwt.key");
        let a = load_or_create_key(&p).unwrap();
        let b = load_or_create_key(&p).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

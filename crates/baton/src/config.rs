//! Configuration: defaults, then a TOML file, then `BATON_*` environment, then flags.
//! Secrets (the database URL's password) are never printed.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub key_file: Option<PathBuf>,
    pub log_format: Option<String>,
    pub secure_cookies: Option<bool>,
    pub max_connections: Option<u32>,
    pub mode: Option<String>,
    pub metrics_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Production,
    Development,
}

#[derive(Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub key_file: PathBuf,
    pub log_format: String,
    pub secure_cookies: bool,
    pub max_connections: u32,
    pub mode: Mode,
    /// Bearer token that `/metrics` requires; without one it is open (bind to a private address).
    pub metrics_token: Option<String>,
}

impl Config {
    /// Where the audit chain's anchor is kept: beside the key file's default place, on this
    /// server's disk, out of reach of whoever changes the database (`audit::Anchor`).
    pub fn audit_anchor(&self) -> PathBuf {
        self.data_dir.join("audit-anchor.json")
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_deref().map(redact_url))
            .field("key_file", &self.key_file)
            .field("log_format", &self.log_format)
            .field("secure_cookies", &self.secure_cookies)
            .field("max_connections", &self.max_connections)
            .field("mode", &self.mode)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// What flags and environment gave (clap reads `BATON_*` for each).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Address to listen on.
    #[arg(long, global = true, env = "BATON_LISTEN")]
    pub listen: Option<String>,
    /// Directory for the embedded database and the key file.
    #[arg(long, global = true, env = "BATON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL; without it Baton uses SQLite in the data directory.
    #[arg(long, global = true, env = "BATON_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Key file (created on first start). Share it between app servers on one database.
    #[arg(long, global = true, env = "BATON_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, global = true, env = "BATON_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Mark cookies Secure (when served over HTTPS).
    #[arg(long, global = true, env = "BATON_SECURE_COOKIES")]
    pub secure_cookies: Option<bool>,
    /// Database connections (readers on SQLite).
    #[arg(long, global = true, env = "BATON_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// production or development.
    #[arg(long, global = true, env = "BATON_MODE")]
    pub mode: Option<String>,
    /// Bearer token required by /metrics (Prometheus `authorization` credentials).
    #[arg(long, global = true, env = "BATON_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// TOML configuration file (default: baton.toml in the data directory, if present).
    #[arg(long, global = true, env = "BATON_CONFIG")]
    pub config: Option<PathBuf>,
}

impl Overrides {
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let data_dir_hint = self.data_dir.clone().unwrap_or_else(|| PathBuf::from("baton-data"));
        let file_path = self.config.clone().or_else(|| Some(data_dir_hint.join("baton.toml")).filter(|p| p.exists()));
        let file: FileConfig = match &file_path {
            Some(p) => toml::from_str(&std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("config {}: {e}", p.display()))?)
                .map_err(|e| anyhow::anyhow!("config {}: {e}", p.display()))?,
            None => FileConfig::default(),
        };
        let data_dir = self.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("baton-data"));
        let mode = match self.mode.clone().or(file.mode).as_deref() {
            None | Some("production") => Mode::Production,
            Some("development") => Mode::Development,
            Some(other) => anyhow::bail!("mode must be production or development, not {other}"),
        };
        let log_format = self.log_format.clone().or(file.log_format).unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            anyhow::bail!("log format must be text or json, not {log_format}");
        }
        Ok(Config {
            listen: self.listen.clone().or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".into()),
            key_file: self.key_file.clone().or(file.key_file).unwrap_or_else(|| data_dir.join("keys.json")),
            database_url: self.database_url.clone().or(file.database_url).filter(|u| !u.is_empty()),
            data_dir,
            log_format,
            secure_cookies: self.secure_cookies.or(file.secure_cookies).unwrap_or(false),
            max_connections: self.max_connections.or(file.max_connections).unwrap_or(8),
            mode,
            metrics_token: self.metrics_token.clone().or(file.metrics_token).filter(|t| !t.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_and_redaction() {
        let dir = std::env::temp_dir().join(format!("baton-cfg-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("b.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nmax_connections = 3\n").unwrap();
        let o = Overrides { config: Some(file.clone()), max_connections: Some(5), data_dir: Some(dir.clone()), ..Default::default() };
        let c = o.resolve().unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.max_connections, 5);
        assert_eq!(c.key_file, dir.join("keys.json"));
        assert_eq!(c.mode, Mode::Production);
        std::fs::write(&file, "nope = 1\n").unwrap();
        assert!(o.resolve().is_err());
        assert_eq!(redact_url("postgres://baton:s3cret@db:5432/baton"), "postgres://baton:***@db:5432/baton");
        let c = Config { database_url: Some("postgres://u:pw@h/d".into()), metrics_token: Some("tok-secret".into()), ..c };
        assert!(!format!("{c:?}").contains("pw"));
        assert!(!format!("{c:?}").contains("tok-secret"));
    }
}

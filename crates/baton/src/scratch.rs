//! A throw-away place for `baton bench` and `baton sim`: a temporary data directory, and on
//! PostgreSQL a database of its own, both removed by `remove` when the run is over.

use crate::config::{Config, Mode};
use baton_store::Db;

pub struct Scratch {
    pub cfg: Config,
    drop_db: Option<(Db, String)>,
}

fn err(e: baton_domain::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

impl Scratch {
    /// `backend` is `sqlite` or `postgres` (a new database next to `pg_url`'s); `prefix` names
    /// the directory and the database (`baton_bench`, `baton_sim`).
    pub async fn create(prefix: &str, backend: &str, pg_url: &str, max_connections: u32) -> anyhow::Result<Scratch> {
        let id = uuid::Uuid::now_v7().simple();
        let tmp = std::env::temp_dir().join(format!("{}-{id}", prefix.replace('_', "-")));
        let (database_url, drop_db) = match backend {
            "sqlite" => (None, None),
            "postgres" => {
                let name = format!("{prefix}_{id}");
                let admin = Db::open_postgres(pg_url, &Default::default()).await.map_err(err)?;
                admin.execute_raw(&format!("CREATE DATABASE {name}")).await.map_err(err)?;
                let url = match pg_url.rfind('/') {
                    Some(i) => format!("{}/{name}", &pg_url[..i]),
                    None => anyhow::bail!("pg url has no database name"),
                };
                (Some(url), Some((admin, name)))
            }
            other => anyhow::bail!("backend must be sqlite or postgres, not {other}"),
        };
        let cfg = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: tmp.clone(),
            database_url,
            key_file: tmp.join("keys.json"),
            log_format: "text".into(),
            secure_cookies: false,
            max_connections,
            mode: Mode::Development,
            metrics_token: None,
        };
        Ok(Scratch { cfg, drop_db })
    }

    /// Drop the database and the directory (the store must be closed first).
    pub async fn remove(self) -> anyhow::Result<()> {
        if let Some((admin, name)) = self.drop_db {
            admin.execute_raw(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.map_err(err)?;
        }
        let _ = std::fs::remove_dir_all(&self.cfg.data_dir);
        Ok(())
    }
}

//! Start-up: keys, database, migrations, seeds, HTTP server and jobs, and a graceful stop.

use crate::config::{Config, Mode};
use anyhow::Context;
use baton_domain::clock::Clock;
use baton_store::{Db, DbOptions, Keyring, Store, Vault, policy, users};
use baton_web::{AppState, WebConfig};
use chrono::{DateTime, Utc};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// When the first policy version takes effect: the county meeting of 10 Nov 2022.
pub fn first_policy_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2022-11-10T00:00:00+08:00").map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

pub async fn open_db(cfg: &Config) -> anyhow::Result<Db> {
    let opts = DbOptions { max_connections: cfg.max_connections };
    let db = match &cfg.database_url {
        Some(url) => Db::open_postgres(url, &opts).await.map_err(|e| anyhow::anyhow!("{e}")).context("opening PostgreSQL")?,
        None => {
            std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
            Db::open_sqlite(&cfg.data_dir.join("baton.db"), &opts).await.map_err(|e| anyhow::anyhow!("{e}")).context("opening SQLite")?
        }
    };
    Ok(db)
}

pub fn open_vault(cfg: &Config) -> anyhow::Result<Vault> {
    let (ring, created) = Keyring::load_or_create(&cfg.key_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    if created {
        tracing::info!(key_file = %cfg.key_file.display(), "created a new key file; back it up: without it, personal data cannot be read");
    }
    Vault::new(&ring).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Open, migrate and seed. The manual clock is refused in production mode.
pub async fn open_store(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Store> {
    if clock.is_manual() && cfg.mode == Mode::Production {
        anyhow::bail!("a manual clock is for tests and simulation; production mode refuses it");
    }
    let vault = open_vault(cfg)?;
    let db = open_db(cfg).await?;
    db.migrate().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::new(db, Arc::new(vault), clock);
    users::seed_roles(&store).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    policy::seed(&store, first_policy_time()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(store)
}

pub struct Running {
    pub addr: SocketAddr,
    pub store: Store,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    jobs: tokio::task::JoinHandle<()>,
    audit_anchor: std::path::PathBuf,
}

impl Running {
    /// Stop accepting, finish requests in flight, stop the jobs, close the database.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.jobs.await;
        crate::jobs::anchor_audit(&self.store, &self.audit_anchor).await;
        self.store.db.close().await;
    }
}

pub async fn start(store: Store, cfg: &Config, listener: tokio::net::TcpListener) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    if cfg.metrics_token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "/metrics is open to anyone who can reach this address; set BATON_METRICS_TOKEN");
    }
    let metrics = Arc::new(baton_web::metrics::Metrics::default());
    let state = AppState {
        store: store.clone(),
        config: Arc::new(WebConfig { secure_cookies: cfg.secure_cookies, metrics_token: cfg.metrics_token.clone(), ..WebConfig::default() }),
        metrics: metrics.clone(),
    };
    let (stop, rx) = watch::channel(false);
    let app = baton_web::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let mut srx = rx.clone();
    let server = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = srx.wait_for(|v| *v).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "server stopped");
        }
    });
    let audit_anchor = cfg.audit_anchor();
    let jobs = tokio::spawn(crate::jobs::run(store.clone(), metrics, rx, audit_anchor.clone()));
    Ok(Running { addr, store, stop, server, jobs, audit_anchor })
}

/// Run until SIGINT or SIGTERM, then stop gracefully.
pub async fn serve_until_signal(store: Store, cfg: &Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await.with_context(|| format!("listening on {}", cfg.listen))?;
    let running = start(store, cfg, listener).await?;
    tracing::info!(addr = %running.addr, backend = ?running.store.db.backend(), "Baton is serving");
    println!("Baton is serving at http://{}", running.addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

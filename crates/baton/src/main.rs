//! `baton`: the one binary. See the README for the commands.

use anyhow::Context;
use baton::config::{Config, Overrides};
use baton::{app, bench, demo, sim};
use baton_domain::clock::SystemClock;
use clap::{Parser, Subcommand};
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "baton", version, about = "闭环接力 · a county's outbreak-control operations system")]
struct Cli {
    #[command(flatten)]
    config: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web UI, the JSON API and the background jobs.
    Serve,
    /// Build the demo county (Huguan, 140427) if it is not there, print the logins, and serve it.
    Demo {
        /// Build and print the logins, then exit.
        #[arg(long)]
        no_serve: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage encryption keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Measure throughput and latency against ceilings measured in the same run.
    Bench(bench::BenchArgs),
    /// A day of trucks on the manual clock with injected faults: every injected breach raised, and nothing else.
    Sim(sim::SimArgs),
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user (the first administrator, typically).
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: String,
        /// Unit id; without it, the command office (created if missing, in --county).
        #[arg(long)]
        unit_id: Option<uuid::Uuid>,
        #[arg(long, default_value = "admin")]
        role: String,
        /// County code for the scope (and for a new command office).
        #[arg(long, default_value = "140427")]
        county: String,
        /// Read the password from this environment variable (never from a flag).
        #[arg(long, default_value = "BATON_NEW_PASSWORD")]
        password_env: String,
    },
    /// Set a new password (read from the environment variable) and end the user's sessions.
    ResetPassword {
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "BATON_NEW_PASSWORD")]
        password_env: String,
    },
    /// Disable a user and end their sessions.
    Disable {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create the key file if it does not exist.
    Init,
    /// Add a new data key, make it active, and re-seal every stored value with it.
    Rotate,
    /// Show key ids (never the keys).
    Show,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the whole hash chain; exits non-zero if any entry was edited, deleted or reordered.
    Verify,
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg: Config = cli.config.resolve()?;
    init_logs(&cfg.log_format);
    tracing::debug!(config = ?cfg, "configuration");
    match cli.command {
        Command::Serve => {
            let store = app::open_store(&cfg, Arc::new(SystemClock)).await?;
            app::serve_until_signal(store, &cfg).await
        }
        Command::Demo { no_serve } => {
            let store = app::open_store(&cfg, Arc::new(SystemClock)).await?;
            let logins = demo::build(&store, &demo::DemoOptions::default()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("壶关县 (140427) demo county is ready. Logins (password for all: {}):", demo::DEMO_PASSWORD);
            for l in &logins {
                println!("  {:<12} {:<18} {}", l.username, l.role, l.unit);
            }
            if no_serve {
                return Ok(());
            }
            app::serve_until_signal(store, &cfg).await
        }
        Command::Migrate => {
            let db = app::open_db(&cfg).await?;
            db.migrate().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("migrations applied ({:?})", db.backend());
            Ok(())
        }
        Command::User(cmd) => user_cmd(&cfg, cmd).await,
        Command::Keys(cmd) => keys_cmd(&cfg, cmd).await,
        Command::Audit(AuditCmd::Verify) => {
            let store = app::open_store(&cfg, Arc::new(SystemClock)).await?;
            let path = cfg.audit_anchor();
            let anchor = baton_store::audit::read_anchor(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let report = baton_store::audit::verify_anchored(&store.db, &store.vault, anchor.as_ref()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            if report.ok() {
                match &anchor {
                    Some(a) => println!("audit chain intact: {} entries, anchored at entry {} ({})", report.entries, a.seq, path.display()),
                    None => println!(
                        "audit chain intact: {} entries; no anchor at {} yet, so deletion of the newest entries cannot be ruled out",
                        report.entries,
                        path.display()
                    ),
                }
                Ok(())
            } else {
                for p in &report.problems {
                    println!("BROKEN: {p}");
                }
                anyhow::bail!("audit chain broken: {} problem(s) in {} entries", report.problems.len(), report.entries)
            }
        }
        Command::Bench(args) => bench::run(args).await,
        Command::Sim(args) => sim::run(args).await,
    }
}

fn password_from(var: &str) -> anyhow::Result<String> {
    std::env::var(var).with_context(|| format!("set the password in the environment variable {var}"))
}

async fn user_cmd(cfg: &Config, cmd: UserCmd) -> anyhow::Result<()> {
    use baton_store::{Principal, units, users};
    let store = app::open_store(cfg, Arc::new(SystemClock)).await?;
    let sys = Principal::system(format!("cli-{}", uuid::Uuid::now_v7()));
    let err = |e: baton_domain::Error| {
        anyhow::anyhow!("{}: {:?}", e.message(false), e.fields().iter().map(|f| format!("{}: {}", f.field, f.en)).collect::<Vec<_>>())
    };
    let find = |username: String| {
        let store = store.clone();
        let sys = sys.clone();
        async move {
            users::list(&store, &sys, &users::UserFilter { q: Some(username.clone()), ..Default::default() })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .into_iter()
                .find(|u| u.username == username.to_ascii_lowercase())
                .with_context(|| format!("no user {username}"))
        }
    };
    match cmd {
        UserCmd::Create { username, display_name, unit_id, role, county, password_env } => {
            let unit_id = match unit_id {
                Some(u) => u,
                None => {
                    let f = units::UnitFilter { kind: Some("command_office".into()), q: None };
                    match units::list(&store, &sys, &f).await.map_err(err)?.into_iter().find(|u| u.division_code == county) {
                        Some(u) => u.id,
                        None => {
                            let name = format!(
                                "{}疫情防控指挥部办公室",
                                baton_domain::division::Divisions::get_all().get(&county).map(|d| d.name).unwrap_or("")
                            );
                            let input = units::UnitInput {
                                name,
                                kind: "command_office".into(),
                                division_code: county.clone(),
                                supervisor_id: None,
                                address: String::new(),
                                active: true,
                            };
                            units::create(&store, &sys, &input).await.map_err(err)?.id
                        }
                    }
                }
            };
            let input = users::UserInput {
                username,
                display_name,
                unit_id,
                role,
                scope_kind: "division".into(),
                scope_code: county,
                password: password_from(&password_env)?,
                phone: String::new(),
                id_number: String::new(),
                disabled: false,
            };
            let u = users::create(&store, &sys, &input).await.map_err(err)?;
            println!("created user {} ({})", u.username, u.id);
        }
        UserCmd::ResetPassword { username, password_env } => {
            let u = find(username).await?;
            users::reset_password(&store, &sys, u.id, &password_from(&password_env)?).await.map_err(err)?;
            println!("password reset for {}; their sessions have ended", u.username);
        }
        UserCmd::Disable { username } => {
            let u = find(username).await?;
            let (scope_kind, scope_code) = match &u.scope {
                baton_domain::scope::Scope::Division { code } => ("division", code.clone()),
                baton_domain::scope::Scope::Unit { .. } => ("unit", String::new()),
            };
            let input = users::UserInput {
                username: u.username.clone(),
                display_name: u.display_name.clone(),
                unit_id: u.unit_id,
                role: u.role.clone(),
                scope_kind: scope_kind.into(),
                scope_code,
                password: String::new(),
                phone: String::new(),
                id_number: String::new(),
                disabled: true,
            };
            users::update(&store, &sys, u.id, &input).await.map_err(err)?;
            println!("disabled {}; their sessions have ended", u.username);
        }
    }
    Ok(())
}

async fn keys_cmd(cfg: &Config, cmd: KeysCmd) -> anyhow::Result<()> {
    use baton_store::Keyring;
    match cmd {
        KeysCmd::Init => {
            let (_, created) = Keyring::load_or_create(&cfg.key_file).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{} {}", if created { "created" } else { "exists:" }, cfg.key_file.display());
        }
        KeysCmd::Show => {
            let k = Keyring::load(&cfg.key_file).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("active key: {}; keys: {}", k.active, k.keys.keys().cloned().collect::<Vec<_>>().join(", "));
        }
        KeysCmd::Rotate => {
            let mut k = Keyring::load(&cfg.key_file).map_err(|e| anyhow::anyhow!("{e}"))?;
            let id = k.rotate();
            k.save(&cfg.key_file).map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = app::open_store(cfg, Arc::new(SystemClock)).await?;
            let err = |e: baton_domain::Error| anyhow::anyhow!("{e}");
            // Every table that seals personal data.
            let n = baton_store::users::reseal_all(&store).await.map_err(err)?
                + baton_store::whitelist::reseal_all(&store).await.map_err(err)?
                + baton_store::trips::reseal_all(&store).await.map_err(err)?
                + baton_store::persons::reseal_all(&store).await.map_err(err)?;
            println!("new active key {id}; re-sealed {n} values");
        }
    }
    Ok(())
}

//! `baton sim`: a day of trucks in the demo county on the manual clock, with faults injected at
//! random, driven through the store functions the API calls (pre-report, check-in with its landing
//! test, escort handoffs, arrival, departure, exit, quarantine, township conversion; the landing
//! tubes shipped to the lab and resulted). The clock moves in steps and after each the deadline
//! watcher runs exactly as in production (`jobs::watch`). At the end the alerts raised on trips,
//! by trip and kind, are compared with the faults injected: every injected breach must have been
//! raised and nothing else. Alerts on other subjects (tubes, re-test orders) are accounted for
//! separately: only a positive landing test may cause them.

use crate::{app, demo};
use baton_domain::Error;
use baton_domain::clock::{Clock, ManualClock};
use baton_domain::ident::IdNumber;
use baton_domain::trip::{BreachKind, HandoffPurpose, TripState};
use baton_store::testing::{BatchInput, ReceiptInput, ResultInput};
use baton_store::trips::{CheckInInput, CrewInput, ReportInput};
use baton_store::{Principal, Store, escorts, q, testing, trips, units};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Trucks in the day.
    #[arg(long, default_value_t = 500)]
    pub trucks: usize,
    /// Seed of the random choices (the same seed gives the same day).
    #[arg(long, default_value_t = 20221110)]
    pub seed: u64,
    /// Share of trucks with one injected fault.
    #[arg(long, default_value_t = 0.25)]
    pub fault_rate: f64,
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    pub backend: String,
    /// PostgreSQL server URL for a throw-away database (postgres backend).
    #[arg(long, env = "BATON_SIM_PG_URL", default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres", hide_env_values = true)]
    pub pg_url: String,
}

#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    pub trucks: usize,
    pub seed: u64,
    pub fault_rate: f64,
}

/// The faults the sim injects, each named by the breach it must raise.
pub const FAULTS: &[BreachKind] = &[
    BreachKind::NoArrival,
    BreachKind::HandoffNotAccepted,
    BreachKind::Overstay,
    BreachKind::NoExit,
    BreachKind::NotDisposed,
    BreachKind::PlateMismatch,
    BreachKind::PositiveLanding,
];

/// Minutes between two runs of the deadline watcher.
const STEP_MINUTES: i64 = 5;
/// Trucks reach the checkpoints between these hours of the day; the day is watched until `END_HOURS`,
/// when every deadline of the last truck has passed.
const ARRIVALS_HOURS: (i64, i64) = (1, 21);
const END_HOURS: i64 = 33;

#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub trucks: usize,
    pub by_class: BTreeMap<String, usize>,
    pub pre_reported: usize,
    /// Escort handoffs proposed by checkpoints to the receiver's escort, and sent by the watcher to a fallback escort.
    pub escorts: (usize, usize),
    /// Per breach kind: injected, raised.
    pub rows: BTreeMap<String, (usize, usize)>,
    /// (plate, kind) injected but not raised.
    pub missing: Vec<(String, String)>,
    /// (plate, kind) raised but not injected.
    pub unexpected: Vec<(String, String)>,
    /// Alerts on other subjects, by kind: distinct subjects.
    pub other: BTreeMap<String, usize>,
    /// Other-subject alerts no injected fault explains.
    pub other_unexpected: Vec<String>,
    pub actions: usize,
}

impl SimReport {
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.other_unexpected.is_empty()
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let classes: Vec<String> = self.by_class.iter().map(|(k, v)| format!("{k} {v}")).collect();
        s.push_str(&format!(
            "trucks {} ({}), pre-reported {}, {} actions; escort handoffs: {} to receivers' escorts by checkpoints, {} to fallback escorts by the watcher\n",
            self.trucks,
            classes.join(", "),
            self.pre_reported,
            self.actions,
            self.escorts.0,
            self.escorts.1
        ));
        s.push_str(&format!("{:<22} {:>8} {:>8} {:>8} {:>10}\n", "breach", "injected", "raised", "missing", "unexpected"));
        let (mut ti, mut tr) = (0, 0);
        for (kind, (injected, raised)) in &self.rows {
            let missing = self.missing.iter().filter(|m| &m.1 == kind).count();
            let unexpected = self.unexpected.iter().filter(|m| &m.1 == kind).count();
            s.push_str(&format!("{kind:<22} {injected:>8} {raised:>8} {missing:>8} {unexpected:>10}\n"));
            ti += injected;
            tr += raised;
        }
        s.push_str(&format!("{:<22} {ti:>8} {tr:>8} {:>8} {:>10}\n", "total", self.missing.len(), self.unexpected.len()));
        for (plate, kind) in &self.missing {
            s.push_str(&format!("MISSING    {plate} {kind}\n"));
        }
        for (plate, kind) in &self.unexpected {
            s.push_str(&format!("UNEXPECTED {plate} {kind}\n"));
        }
        let other: Vec<String> = self.other.iter().map(|(k, v)| format!("{k} {v}")).collect();
        s.push_str(&format!(
            "alerts on other subjects (from positive landing tests): {}\n",
            if other.is_empty() { "none".into() } else { other.join(", ") }
        ));
        for o in &self.other_unexpected {
            s.push_str(&format!("UNEXPECTED {o}\n"));
        }
        s.push_str(if self.ok() { "result: every injected breach was raised, and nothing else\n" } else { "result: MISMATCH\n" });
        s
    }
}

/// `baton sim`: a fresh demo county on a temporary database, a day of trucks, the table.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let scratch = crate::scratch::Scratch::create("baton_sim", &args.backend, &args.pg_url, 4).await?;
    let cfg = &scratch.cfg;
    let clock = Arc::new(ManualClock::new(app::first_policy_time()));
    let store = app::open_store(cfg, clock.clone()).await?;
    demo::build(&store, &demo::DemoOptions { villages: false }).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("baton sim · {} trucks · seed {} · fault rate {} · backend {}", args.trucks, args.seed, args.fault_rate, args.backend);
    let started = std::time::Instant::now();
    let report = simulate(&store, &clock, &SimOptions { trucks: args.trucks, seed: args.seed, fault_rate: args.fault_rate }).await;
    store.db.close().await;
    scratch.remove().await?;
    let report = report.map_err(|e| anyhow::anyhow!("{e}"))?;
    print!("{}", report.table());
    println!("simulated in {:.1} s", started.elapsed().as_secs_f64());
    if !report.ok() {
        anyhow::bail!("the raised alerts do not match the injected faults");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Report,
    CheckIn,
    ProposeEscort,
    AwaitEscort,
    AcceptEscort,
    Arrive,
    Depart,
    Exit,
    ProposeQuarantine,
    AcceptQuarantine,
    AwaitTownship,
    AcceptTownship,
    Done,
}

struct Truck {
    plate: String,
    id_number: String,
    code: &'static str,
    dest: Uuid,
    checkpoint: Uuid,
    reported: bool,
    arrive_at: DateTime<Utc>,
    fault: Option<BreachKind>,
    trip: Option<Uuid>,
    phase: Phase,
    next_at: DateTime<Utc>,
    /// The unit to act as for the next accept, and the handoff.
    accept: Option<(Uuid, Uuid)>,
    seen: BTreeSet<Uuid>,
    tube: String,
}

impl Truck {
    fn class(&self) -> &'static str {
        match self.code {
            "green" => "pass",
            "yellow" => "closed_loop",
            _ => "isolate",
        }
    }
}

struct Units {
    checkpoints: Vec<Uuid>,
    receivers: Vec<Uuid>,
    lab: Uuid,
    hotel: Uuid,
}

async fn find(store: &Store, kind: &str, name: &str) -> Result<Uuid, Error> {
    let sys = Principal::system("sim");
    units::list(store, &sys, &units::UnitFilter { kind: Some(kind.into()), q: Some(name.into()) })
        .await?
        .into_iter()
        .find(|u| u.name == name)
        .map(|u| u.id)
        .ok_or(Error::NotFound("demo unit"))
}

async fn demo_units(store: &Store) -> Result<Units, Error> {
    let mut checkpoints = Vec::new();
    for n in ["龙泉高速出口卡口", "集店高速出口卡口", "树掌省道入口卡口"] {
        checkpoints.push(find(store, "checkpoint", n).await?);
    }
    let mut receivers = Vec::new();
    for (k, n) in [
        ("cargo_owner", "壶关县太行钢材贸易有限公司"),
        ("cargo_owner", "壶关县龙泉农产品批发有限公司"),
        ("cargo_owner", "壶关县百尺建材有限公司"),
        ("logistics_park", "壶关经济技术开发区物流园"),
    ] {
        receivers.push(find(store, k, n).await?);
    }
    Ok(Units {
        checkpoints,
        receivers,
        lab: find(store, "lab", "壶关县人民医院核酸检测实验室").await?,
        hotel: find(store, "quarantine_hotel", "壶关县集中隔离点(一)").await?,
    })
}

/// Acting as a unit's staff.
fn as_unit(unit: Uuid) -> Principal {
    Principal { unit_id: Some(unit), ..Principal::system("sim") }
}

fn id_number(seq: usize) -> String {
    let first17 = format!("140427{}{:02}{:02}{:03}", 1960 + seq % 40, 1 + seq % 12, 1 + seq % 28, seq % 1000);
    let c = IdNumber::check_char(first17.as_bytes()) as char;
    format!("{first17}{c}")
}

fn minutes(rng: &mut StdRng, lo: i64, hi: i64) -> Duration {
    Duration::minutes(rng.gen_range(lo..=hi))
}

/// The faults that make sense for a truck of this class (pre-reported or not).
fn applicable(class: &str, reported: bool) -> Vec<BreachKind> {
    let mut f = vec![BreachKind::PositiveLanding];
    if reported {
        f.push(BreachKind::PlateMismatch);
    }
    match class {
        "pass" => f.extend([BreachKind::NoArrival, BreachKind::NoExit]),
        "closed_loop" => f.extend([BreachKind::NoArrival, BreachKind::HandoffNotAccepted, BreachKind::Overstay, BreachKind::NoExit]),
        _ => f.push(BreachKind::NotDisposed),
    }
    f
}

fn trucks(opts: &SimOptions, u: &Units, t0: DateTime<Utc>, rng: &mut StdRng) -> Vec<Truck> {
    (0..opts.trucks)
        .map(|i| {
            let code = match rng.gen_range(0..100) {
                0..60 => "green",
                60..93 => "yellow",
                _ => "red",
            };
            let reported = rng.gen_bool(0.7);
            let arrive_at = t0 + Duration::minutes(rng.gen_range(ARRIVALS_HOURS.0 * 60..ARRIVALS_HOURS.1 * 60));
            let mut t = Truck {
                plate: format!("晋D{:05}", 10000 + i),
                id_number: id_number(i),
                code,
                dest: u.receivers[rng.gen_range(0..u.receivers.len())],
                checkpoint: u.checkpoints[rng.gen_range(0..u.checkpoints.len())],
                reported,
                arrive_at,
                fault: None,
                trip: None,
                phase: if reported { Phase::Report } else { Phase::CheckIn },
                // A pre-report comes 1 to 12 hours ahead (not before the day starts).
                next_at: if reported { (arrive_at - Duration::minutes(rng.gen_range(60..720))).max(t0) } else { arrive_at },
                accept: None,
                seen: BTreeSet::new(),
                tube: format!("LT{:06}", i),
            };
            if rng.gen_bool(opts.fault_rate) {
                let f = applicable(t.class(), reported);
                t.fault = Some(f[rng.gen_range(0..f.len())]);
            }
            t
        })
        .collect()
}

/// Run the day on `store` (a fresh demo county) whose clock is `clock`.
pub async fn simulate(store: &Store, clock: &ManualClock, opts: &SimOptions) -> Result<SimReport, Error> {
    let t0 = clock.now();
    let u = demo_units(store).await?;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut fleet = trucks(opts, &u, t0, &mut rng);
    let mut rep = SimReport { trucks: fleet.len(), ..Default::default() };
    for t in &fleet {
        *rep.by_class.entry(t.class().to_string()).or_default() += 1;
        rep.pre_reported += usize::from(t.reported);
    }
    let mut receiver_escort = HashMap::new();
    for r in &u.receivers {
        receiver_escort.insert(*r, escorts::escort_of(store, *r).await?);
    }
    // Landing tubes: opened at check-in, shipped by the checkpoint each step, received and resulted by the lab.
    let mut to_ship: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
    let mut batches: Vec<(DateTime<Utc>, Uuid, Vec<String>, bool)> = Vec::new();
    let positive: BTreeSet<String> = fleet.iter().filter(|t| t.fault == Some(BreachKind::PositiveLanding)).map(|t| t.tube.clone()).collect();
    let end = t0 + Duration::hours(END_HOURS);
    loop {
        let now = clock.now();
        for t in fleet.iter_mut() {
            if t.phase != Phase::Done && t.next_at <= now {
                rep.actions += step(store, t, &u, &receiver_escort, &mut rng, now, &mut to_ship, &mut rep.escorts).await?;
            }
        }
        for (cp, barcodes) in std::mem::take(&mut to_ship) {
            let b = testing::ship(store, &as_unit(cp), &BatchInput { lab_id: u.lab, barcodes: barcodes.clone() }).await?;
            batches.push((now + minutes(&mut rng, 30, 90), b.id, barcodes, false));
        }
        for (due, id, barcodes, received) in batches.iter_mut().filter(|b| b.0 <= now) {
            let lab = as_unit(u.lab);
            if *received {
                let rows: Vec<ResultInput> = barcodes
                    .iter()
                    .map(|b| ResultInput {
                        barcode: b.clone(),
                        result: if positive.contains(b) { "positive".into() } else { "negative".into() },
                        ct: positive.contains(b).then_some(24.0),
                        ct_orf1ab: None,
                        ct_n: None,
                        tested_at: None,
                    })
                    .collect();
                testing::post_results(store, &lab, &rows, "sim").await?;
                *due = end + Duration::days(365);
            } else {
                testing::receive(store, &lab, *id, &ReceiptInput { barcodes: barcodes.clone() }).await?;
                *received = true;
                *due = now + minutes(&mut rng, 30, 90);
            }
        }
        if now >= end {
            break;
        }
        clock.advance(Duration::minutes(STEP_MINUTES));
        crate::jobs::watch(store).await?;
    }
    compare(store, &fleet, &mut rep).await?;
    Ok(rep)
}

/// The truck's next action at `now`; returns how many actions were done.
#[allow(clippy::too_many_arguments)]
async fn step(
    store: &Store,
    t: &mut Truck,
    u: &Units,
    receiver_escort: &HashMap<Uuid, Option<Uuid>>,
    rng: &mut StdRng,
    now: DateTime<Utc>,
    to_ship: &mut BTreeMap<Uuid, Vec<String>>,
    escort_counts: &mut (usize, usize),
) -> Result<usize, Error> {
    let fault = t.fault;
    let trip = t.trip.unwrap_or_default();
    let act = |unit: Uuid, action: serde_json::Value| async move { trips::act(store, &as_unit(unit), trip, action).await };
    let crew = |code: Option<&str>| {
        vec![CrewInput { name: "司机".into(), id_number: t.id_number.clone(), phone: String::new(), health_code: code.map(str::to_string) }]
    };
    let later = |rng: &mut StdRng, lo, hi| now + minutes(rng, lo, hi);
    match t.phase {
        Phase::Report => {
            let input = ReportInput { plate: t.plate.clone(), trailer: None, destination_id: t.dest, expected_at: t.arrive_at, crew: crew(None) };
            t.trip = Some(trips::report(store, &as_unit(t.dest), &input).await?.trip.id);
            (t.phase, t.next_at) = (Phase::CheckIn, t.arrive_at);
        }
        Phase::CheckIn => {
            let mut input = CheckInInput {
                plate: t.plate.clone(),
                trailer: None,
                destination_id: Some(t.dest),
                eta: now + Duration::minutes(120),
                crew: crew(Some(t.code)),
                test_taken_at: Some(now - Duration::hours(10)),
                itinerary: Vec::new(),
                risk: baton_domain::classify::RiskExposure::None,
                antigen_positive: false,
                landing_tube: t.tube.clone(),
                trip_id: None,
            };
            if fault == Some(BreachKind::PlateMismatch) {
                // The sheet picked is this truck's report, but the plate typed is another: refused and raised.
                let wrong = CheckInInput { plate: format!("晋E{}", &t.plate[4..]), trip_id: t.trip, ..input.clone() };
                if trips::check_in(store, &as_unit(t.checkpoint), &wrong).await.is_ok() {
                    return Err(Error::internal("a plate other than the report's was checked in"));
                }
                input.trip_id = t.trip;
            }
            let v = trips::check_in(store, &as_unit(t.checkpoint), &input).await?;
            if v.trip.class.map(|c| c.as_str()) != Some(t.class()) {
                return Err(Error::internal(format!("{} classified {:?}, not {}", t.plate, v.trip.class, t.class())));
            }
            t.trip = Some(v.trip.id);
            // The check-in registered the landing tube, with the driver in it.
            to_ship.entry(t.checkpoint).or_default().push(t.tube.clone());
            let escort = receiver_escort.get(&t.dest).copied().flatten();
            (t.phase, t.next_at) = match (t.class(), fault) {
                ("pass", Some(BreachKind::NoArrival)) => (Phase::Done, now),
                ("pass", _) => (Phase::Arrive, later(rng, 30, 110)),
                ("closed_loop", _) if escort.is_some() => (Phase::ProposeEscort, later(rng, 0, 5)),
                // No escort of its own: the watcher sends a fallback escort after 10 minutes.
                ("closed_loop", _) => (Phase::AwaitEscort, now),
                (_, Some(BreachKind::NotDisposed)) => (Phase::Done, now),
                _ => (Phase::ProposeQuarantine, later(rng, 5, 20)),
            };
            return Ok(2);
        }
        Phase::ProposeEscort => {
            let escort = receiver_escort.get(&t.dest).copied().flatten().unwrap_or_default();
            act(t.checkpoint, json!({"action": "propose_handoff", "to": escort, "purpose": "escort"})).await?;
            escort_counts.0 += 1;
            (t.phase, t.next_at) = (Phase::AwaitEscort, now);
        }
        Phase::AwaitEscort => {
            let v = trips::get(store, &Principal::system("sim"), trip).await?;
            if let Some(p) = v.trip.pending.filter(|p| p.purpose == HandoffPurpose::Escort && !t.seen.contains(&p.id)) {
                t.seen.insert(p.id);
                escort_counts.1 += usize::from(p.fallback.is_some());
                // The fault: the first escort asked never answers.
                if !(fault == Some(BreachKind::HandoffNotAccepted) && t.seen.len() == 1) {
                    t.accept = Some((p.to, p.id));
                    (t.phase, t.next_at) = (Phase::AcceptEscort, later(rng, 3, 15));
                }
            }
            return Ok(0);
        }
        Phase::AcceptEscort => {
            let (by, id) = t.accept.unwrap_or_default();
            act(by, json!({"action": "accept_handoff", "handoff": id})).await?;
            (t.phase, t.next_at) = if fault == Some(BreachKind::NoArrival) { (Phase::Done, now) } else { (Phase::Arrive, later(rng, 20, 60)) };
        }
        Phase::Arrive => {
            act(t.dest, json!({"action": "confirm_arrival"})).await?;
            (t.phase, t.next_at) = match (t.class(), fault) {
                (_, Some(BreachKind::Overstay)) => (Phase::AwaitTownship, now),
                ("closed_loop", _) => (Phase::Depart, later(rng, 30, 300)),
                _ => (Phase::Depart, later(rng, 30, 240)),
            };
        }
        Phase::Depart => {
            act(t.dest, json!({"action": "confirm_departure"})).await?;
            (t.phase, t.next_at) = if fault == Some(BreachKind::NoExit) { (Phase::Done, now) } else { (Phase::Exit, later(rng, 15, 90)) };
        }
        Phase::Exit => {
            let exit = u.checkpoints[rng.gen_range(0..u.checkpoints.len())];
            act(exit, json!({"action": "exit_scan"})).await?;
            t.phase = Phase::Done;
        }
        Phase::ProposeQuarantine => {
            act(t.checkpoint, json!({"action": "propose_handoff", "to": u.hotel, "purpose": "quarantine"})).await?;
            (t.phase, t.next_at) = (Phase::AcceptQuarantine, later(rng, 5, 20));
        }
        Phase::AcceptQuarantine => {
            act(u.hotel, json!({"action": "accept_handoff"})).await?;
            t.phase = Phase::Done;
        }
        Phase::AwaitTownship => {
            // Past the limit the watcher proposes the township; the township takes the crew.
            let v = trips::get(store, &Principal::system("sim"), trip).await?;
            if let Some(p) = v.trip.pending.filter(|p| p.purpose == HandoffPurpose::Township) {
                t.accept = Some((p.to, p.id));
                (t.phase, t.next_at) = (Phase::AcceptTownship, later(rng, 3, 15));
            }
            return Ok(0);
        }
        Phase::AcceptTownship => {
            let (by, id) = t.accept.unwrap_or_default();
            let v = act(by, json!({"action": "accept_handoff", "handoff": id})).await?;
            if v.trip.state != TripState::Converted {
                return Err(Error::internal("the township's acceptance did not convert the trip"));
            }
            t.phase = Phase::Done;
        }
        Phase::Done => return Ok(0),
    }
    Ok(1)
}

/// Injected (trip, kind) against raised (trip, kind), and the alerts on other subjects.
async fn compare(store: &Store, fleet: &[Truck], rep: &mut SimReport) -> Result<(), Error> {
    let plate_of: HashMap<Uuid, &str> = fleet.iter().filter_map(|t| t.trip.map(|id| (id, t.plate.as_str()))).collect();
    let injected: BTreeSet<(Uuid, String)> = fleet.iter().filter_map(|t| Some((t.trip?, t.fault?.as_str().to_string()))).collect();
    let rows = store.db.fetch_all(q!("SELECT subject_kind, subject_id, trip_id, kind FROM alerts")).await?;
    let mut raised = BTreeSet::new();
    let mut other: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    for r in &rows {
        let kind: String = r.get("kind")?;
        match (r.get::<String>("subject_kind")?.as_str(), r.get::<Option<Uuid>>("trip_id")?) {
            ("trip", Some(trip)) => {
                raised.insert((trip, kind));
            }
            (subject, _) => {
                other.entry(format!("{subject}:{kind}")).or_default().insert(r.get("subject_id")?);
            }
        }
    }
    for k in FAULTS {
        rep.rows.insert(k.as_str().to_string(), (0, 0));
    }
    for (_, k) in &injected {
        rep.rows.entry(k.clone()).or_default().0 += 1;
    }
    for (_, k) in &raised {
        rep.rows.entry(k.clone()).or_default().1 += 1;
    }
    let name = |id: &Uuid| plate_of.get(id).map(|p| p.to_string()).unwrap_or_else(|| id.to_string());
    rep.missing = injected.difference(&raised).map(|(id, k)| (name(id), k.clone())).collect();
    rep.unexpected = raised.difference(&injected).map(|(id, k)| (name(id), k.clone())).collect();
    // A positive landing tube is alerted as a positive result, and its crew owes a single-tube re-test.
    let positives = fleet.iter().filter(|t| t.fault == Some(BreachKind::PositiveLanding)).count();
    for (k, subjects) in &other {
        rep.other.insert(k.clone(), subjects.len());
        let explained = match k.as_str() {
            "tube:positive_result" => subjects.len() == positives,
            "retest_order:retest_overdue" => subjects.len() <= positives,
            _ => false,
        };
        if !explained {
            rep.other_unexpected.push(format!("{k}: {} subjects", subjects.len()));
        }
    }
    if positives > 0 && !other.contains_key("tube:positive_result") {
        rep.other_unexpected.push(format!("tube:positive_result: 0 subjects, {positives} positive landing tests"));
    }
    Ok(())
}

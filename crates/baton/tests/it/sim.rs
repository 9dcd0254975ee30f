//! `baton sim` in small: a day of 60 trucks in the demo county on the manual clock, with
//! faults injected at random; every injected breach is raised and nothing else.
use baton::sim::{FAULTS, SimOptions, simulate};
use baton_testkit::{Backend, both, spawn_app};

async fn a_day(b: Backend) {
    let app = spawn_app(b).await;
    let opts = SimOptions { trucks: 60, seed: 7, fault_rate: 0.6 };
    let r = simulate(&app.store, &app.clock, &opts).await.unwrap();
    println!("{}", r.table());
    assert!(r.ok(), "{}", r.table());
    assert_eq!(r.trucks, 60);
    // Not vacuous: most kinds were injected, every injected one was raised, every truck was driven.
    let injected: Vec<&str> = FAULTS.iter().map(|k| k.as_str()).filter(|k| r.rows.get(*k).is_some_and(|(i, _)| *i > 0)).collect();
    assert!(injected.len() >= 6, "{injected:?}\n{}", r.table());
    for (kind, (i, raised)) in &r.rows {
        assert_eq!(i, raised, "{kind}");
    }
    assert!(r.escorts.1 > 0, "fallback escorts were used");
    assert!(r.actions > 5 * 60, "{}", r.actions);
    app.stop().await;
}
both!(a_day_of_trucks_raises_every_injected_breach_and_nothing_else, a_day);

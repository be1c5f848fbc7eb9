//! Each real-kernel measurement of the ledger runs once (not timed: it ran, its
//! checks held and it produced a positive duration), so that CI notices when one
//! breaks. The userfaultfd cycle is skipped, with a message, where userfaultfd is
//! refused. One test function: the signal handlers are process-wide.

use svmkit_ledger::real;

#[test]
fn every_real_measurement_runs_once() {
    let pos = |what: &str, ns: f64| assert!(ns > 0.0, "{what}: {ns} ns");
    pos("first touch", real::first_touch(16).expect("first touch"));
    pos(
        "mprotect",
        real::MprotectRange::new(64 * real::PAGE)
            .and_then(|m| m.sample())
            .expect("mprotect"),
    );
    let (with, without) = real::Fork::new(64 * real::PAGE)
        .and_then(|f| f.sample())
        .expect("fork");
    pos("fork", with);
    pos("fork without the region", without);
    let server = real::ForkServer::spawn(64 * real::PAGE).expect("fork server");
    let (with, without) = server.sample().expect("fork server sample");
    pos("fork server", with);
    pos("fork server without the region", without);
    drop(server);
    pos(
        "MADV_DONTNEED",
        real::DontneedPerPage::new(16)
            .and_then(|d| d.sample())
            .expect("dontneed"),
    );
    pos(
        "mprotect + SIGSEGV cycle",
        real::SegvCycle::new(16)
            .and_then(|c| c.sample())
            .expect("segv cycle"),
    );
    match real::UffdCycle::new(16) {
        Ok(c) => pos("uffd cycle", c.sample().expect("uffd cycle")),
        Err(e) => {
            eprintln!("skipped: the userfaultfd MINOR + SIGBUS cycle: userfaultfd refused: {e}")
        }
    }
    let (peak, now) = real::rss().expect("rss");
    assert!(peak >= now && now > 0);
    // Only the footprint table needs it; a container may refuse clear_refs.
    if let Err(e) = real::reset_peak_rss() {
        eprintln!(
            "note: /proc/self/clear_refs refused ({e}): the footprint's peak RSS would include earlier peaks"
        );
    }
}

#[test]
fn model_measurements_run_once() {
    use svmkit_ledger::model;
    let m = model::Machine::new(model::frames_for(64)).expect("machine");
    assert!(model::first_touch(&m.mm, 16).expect("first touch") > 0.0);
    assert!(
        model::Cycle::new(4)
            .and_then(|c| c.sample())
            .expect("cycle")
            > 0.0
    );
    assert!(model::Invalidation::new(3).expect("notifiers").sample(10) > 0.0);
}

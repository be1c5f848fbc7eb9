//! `svmkit explore` over the corpus: every example ends under exploration as its
//! `[explore.outcomes]` (else its `[outcomes]`) documents for each era it names: the
//! flaw examples fail with the violation they name, the clean ones find nothing
//! within their budget; and every failure replays to the same violation and the
//! same account, byte for byte.

mod common;

use std::sync::Arc;
use std::time::Instant;

use svmkit::Profile;
use svmkit_scenario::RunOutcome;
use svmkit_scenario::explore::{ExploreOptions, explore, replay};
use svmkit_scenario::parse;

/// A clean file's budget in this (debug-build) test: its own `[explore] schedules`,
/// capped so that the suite stays within CI's time (a failing file gets its whole
/// budget: it stops at the failure). The full budgets run in release through
/// `svmkit explore` (docs/EXPLORING.md lists the figures).
const CI_CAP: usize = 200;

#[test]
fn explore_corpus_every_example_ends_as_documented_and_replays_byte_for_byte() {
    let mut problems = Vec::new();
    let mut table = Vec::new();
    for f in common::toml_files("../../examples") {
        let src = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let sc = parse(&name, &src).unwrap_or_else(|e| panic!("{}", e.render()));
        let mut eras: Vec<String> = sc.outcomes.iter().map(|o| o.profile.clone()).collect();
        for o in &sc.explore.outcomes {
            if !eras.contains(&o.profile) {
                eras.push(o.profile.clone());
            }
        }
        for era in eras {
            let want = sc.expected_explore_outcome(&era).unwrap().clone();
            let opts = ExploreOptions {
                // The file's own profile (with any switches it sets) for the era it
                // names, as the corpus test runs it; the plain preset for the others.
                profile: if era == sc.profile.name {
                    Some(sc.profile)
                } else {
                    Profile::by_name(&era)
                },
                schedules: match want.outcome {
                    RunOutcome::Pass => sc.explore.schedules.unwrap_or(1000).min(CI_CAP),
                    _ => sc.explore.schedules.unwrap_or(1000),
                },
                max_steps: sc
                    .explore
                    .max_steps
                    .unwrap_or(ExploreOptions::default().max_steps),
                ..ExploreOptions::default()
            };
            let t = Instant::now();
            let got = explore(&sc, &opts, Arc::new(|_| {}));
            let secs = t.elapsed().as_secs_f64();
            let outcome = got
                .failure
                .as_ref()
                .map_or(RunOutcome::Pass, |f| f.outcome());
            table.push(format!(
                "{name:<48} {era:<11} {:<8} after {:>5} schedule(s), {secs:.3} s",
                outcome.name(),
                got.failure
                    .as_ref()
                    .map_or(got.schedules, |f| f.schedules_run),
            ));
            let finds_ok = match (&want.finds, &got.failure) {
                (Some(w), Some(f)) => f.violation.contains(w.as_str()),
                _ => true,
            };
            if outcome != want.outcome || !finds_ok {
                problems.push(format!(
                    "{name} under {era}: explored to {} (documented {}{}; {})\n{}",
                    outcome.name(),
                    want.outcome.name(),
                    want.finds
                        .as_ref()
                        .map_or(String::new(), |w| format!(" finding `{w}`")),
                    want.source,
                    got.failure
                        .as_ref()
                        .map_or(String::new(), |f| format!("{}\n{}", f.violation, f.account))
                ));
                continue;
            }
            if let Some(found) = &got.failure {
                for _ in 0..2 {
                    match replay(&sc, opts.profile, &found.schedule, found.max_steps) {
                        Err(again) => {
                            if again.violation != found.violation || again.account != found.account
                            {
                                problems.push(format!(
                                    "{name} under {era}: the replay differs\n--- explored\n{}\n--- replayed\n{}",
                                    found.account, again.account
                                ));
                            }
                        }
                        Ok(()) => problems.push(format!("{name} under {era}: the replay passed")),
                    }
                }
            }
        }
    }
    println!("{}", table.join("\n"));
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

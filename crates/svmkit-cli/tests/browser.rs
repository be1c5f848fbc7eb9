//! The trace views checked the way a person looks at them: the HTML timeline opened in
//! headless Chromium (its DOM after the page's script ran, and a screenshot), and a
//! 10,000-event timeline's size and drawing time.
//!
//! Without Chromium (Debian package `chromium`; `.ci/run` installs it) the browser
//! tests say SKIPPED on stderr and check nothing else; with `SVMKIT_REQUIRE_BROWSER`
//! set (as `.ci/run` sets it) a missing browser fails them.

#[path = "../../svmkit-scenario/tests/common/views.rs"]
mod views;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use svmkit::mm::mmu_notifier::Owner;
use svmkit::mm::{MapFlags, Prot};
use svmkit::task::Task;
use svmkit::trace::{TraceEvent, TraceInfo, TraceLevel, View};
use svmkit::{PAGE_SIZE, System, SystemConfig};

/// Says something in the test log even when the test passes (libtest captures
/// `eprintln!`, not writes to the stderr handle).
fn log(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SVMKIT_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// The browser, or `None` after saying the test is skipped (a failure when the
/// environment requires the browser).
fn browser_or_skip(test: &str) -> Option<PathBuf> {
    match chromium() {
        Some(c) => Some(c),
        None if std::env::var_os("SVMKIT_REQUIRE_BROWSER").is_some() => {
            panic!("{test}: chromium is not installed and SVMKIT_REQUIRE_BROWSER is set")
        }
        None => {
            log(&format!(
                "SKIPPED {test}: chromium is not installed (apt-get install chromium); \
                 the page was NOT checked in a browser"
            ));
            None
        }
    }
}

fn out_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("browser")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs headless Chromium on `page` with `args`, within 90 s; its stdout.
fn chrome(browser: &Path, page: &Path, args: &[String], profile: &Path) -> String {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let mut child = Command::new(browser)
        .args(["--headless", "--disable-gpu", "--no-sandbox"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish with {url} in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// The page's DOM after its script ran, and a screenshot of it (its path printed).
fn open(browser: &Path, page: &Path, dir: &Path, size: &str) -> String {
    let dom = chrome(
        browser,
        page,
        &["--dump-dom".to_string()],
        &dir.join("profile-dom"),
    );
    let shot = dir.join(format!(
        "{}.png",
        page.file_stem().unwrap().to_string_lossy()
    ));
    chrome(
        browser,
        page,
        &[
            format!("--screenshot={}", shot.display()),
            format!("--window-size={size}"),
        ],
        &dir.join("profile-shot"),
    );
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG"),
        "no screenshot at {}",
        shot.display()
    );
    log(&format!("screenshot: {}", shot.display()));
    dom
}

/// The value of attribute `name` of the dumped page's `<body>`.
fn body_attr(dom: &str, name: &str) -> Option<String> {
    let start = dom.find("<body")?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    Some(tag[i..i + tag[i..].find('"')?].to_string())
}

/// The dumped DOM without the page's own scripts (whose source mentions the
/// markup it writes): what was drawn.
fn drawn(dom: &str) -> &str {
    &dom[..dom.find("<script").unwrap_or(dom.len())]
}

/// Asserts the script ran to its end with no error, and that the DOM holds what the
/// embedded data says: a group per lane, a rectangle per band segment, an element
/// per item.
fn assert_drawn(dom: &str, html: &str, what: &str) -> serde_json::Value {
    assert_eq!(body_attr(dom, "data-error"), None, "{what}: a script error");
    assert_eq!(
        body_attr(dom, "data-rendered").as_deref(),
        Some("ok"),
        "{what}: the script did not finish"
    );
    let data = views::html_data(html).unwrap();
    let dom = drawn(dom);
    let lanes = data["lanes"].as_array().unwrap().len();
    let segs: usize = data["bands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["segs"].as_array().unwrap().len())
        .sum();
    let items = data["items"].as_array().unwrap().len();
    assert!(
        lanes > 0 && segs > 0 && items > 0,
        "{what}: nothing to draw"
    );
    assert_eq!(
        dom.matches("<g class=\"lane\"").count(),
        lanes,
        "{what}: lanes"
    );
    assert_eq!(
        dom.matches("<g class=\"band\"").count(),
        data["bands"].as_array().unwrap().len(),
        "{what}: bands"
    );
    assert_eq!(
        dom.matches("<rect class=\"seg ").count(),
        segs,
        "{what}: band segments"
    );
    assert_eq!(dom.matches(" data-i=\"").count(), items, "{what}: events");
    assert_eq!(body_attr(dom, "data-items"), Some(items.to_string()));
    data
}

fn svmkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_svmkit"))
        .args(args)
        .output()
        .expect("run svmkit")
}

fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn browser_shows_the_nouveau_starvation_timeline() {
    let Some(browser) = browser_or_skip("browser_shows_the_nouveau_starvation_timeline") else {
        return;
    };
    let dir = out_dir("nouveau");
    let page = dir.join("nouveau-starvation-after-revocation.linux-6.15.html");
    let out = svmkit(&[
        "run",
        &example("nouveau-starvation-after-revocation.toml"),
        "--profile",
        "linux-6.15",
        "--trace",
        page.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    let dom = open(&browser, &page, &dir, "1600,900");
    assert_drawn(&dom, &html, "nouveau");
    let dom = drawn(&dom);
    // Each of the 6 passes, each pass's restore with its unfiltered Clear, and the
    // driver's set_seq, as the page draws them.
    for pass in 1..=6 {
        assert!(
            dom.contains(&format!("data-label=\"driver pass {pass}\"")),
            "pass {pass}"
        );
    }
    for (label, at_least) in [
        ("data-label=\"restore pfn ", 6),
        ("data-label=\"notifier CLEAR owner none\"", 6),
        ("data-label=\"gpu interval: set_seq\"", 6),
        ("data-label=\"read_retry: retry\"", 6),
        ("data-state=\"excl\"", 6),
        ("data-state=\"cpu\"", 6),
    ] {
        let n = dom.matches(label).count();
        assert!(n >= at_least, "{label}: {n}");
    }
    assert!(dom.contains("data-lane=\"gpu-starves\" data-kind=\"thread\""));
    assert!(dom.contains("data-lane=\"gpu\" data-kind=\"device\""));
}

#[test]
fn browser_shows_a_failing_schedules_violation_and_the_steps_before_it() {
    let Some(browser) =
        browser_or_skip("browser_shows_a_failing_schedules_violation_and_the_steps_before_it")
    else {
        return;
    };
    let dir = out_dir("violation");
    let schedule = dir.join("lost-update.linux-6.15.schedule.json");
    let out = svmkit(&[
        "explore",
        &example("lost-update-skip-set-seq.toml"),
        "--schedules",
        "2000",
        "--save",
        schedule.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = dir.join("lost-update.linux-6.15.trace.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let dom = open(&browser, &page, &dir, "1400,700");
    let data = assert_drawn(&dom, &html, "violation");
    let dom = drawn(&dom);
    assert!(dom.contains("<div id=\"violation\" class=\"on\">"));
    assert!(dom.contains("stale device entry"));
    let steps = data["violation"]["steps"].as_array().unwrap().len();
    assert!(steps >= 2);
    assert_eq!(dom.matches("<li data-step=").count(), steps);
    assert_eq!(
        dom.matches(" failing").count(),
        2,
        "the step's bar and its line"
    );
    assert!(dom.contains("class=\"vline\""));
}

/// A record of at least `n` events: device-exclusive conversions and the CPU reads
/// that restore them, over 8 pages, on two tracks.
fn many_events(n: usize) -> Vec<TraceEvent> {
    let sys = System::new(SystemConfig::with_frames(256)).unwrap();
    let mm = sys.create_mm().unwrap();
    let base = 0x4000_0000;
    let pages = 8;
    mm.mmap(
        base,
        pages * PAGE_SIZE,
        Prot::READ.union(Prot::WRITE),
        MapFlags::PRIVATE
            .union(MapFlags::ANONYMOUS)
            .union(MapFlags::FIXED),
    )
    .unwrap();
    sys.set_trace(TraceLevel::Normal);
    let owner = Some(Owner::new());
    let task = Task::new("driver");
    let mut i = 0;
    while (sys.trace().now() as usize) < n {
        let a = base + (i % pages) * PAGE_SIZE;
        sys.trace().set_track(Some("cpu"));
        mm.write_u64(a, i).unwrap();
        sys.trace().set_track(Some("driver"));
        let mut g = mm.mmap_read_lock();
        drop(mm.make_device_exclusive(&mut g, a, owner, &task).unwrap());
        drop(g);
        i += 1;
    }
    sys.trace().take()
}

#[test]
fn html_of_10000_events_stays_under_5_mb() {
    let events = many_events(10_000);
    assert!(events.len() >= 10_000);
    let started = Instant::now();
    let html = View::Html.render_with(&events, &TraceInfo::default());
    let took = started.elapsed();
    let data = views::html_data(&html).unwrap();
    assert_eq!(data["events"], events.len());
    assert!(
        data["bands"].as_array().unwrap().len() >= 8,
        "a band per page"
    );
    log(&format!(
        "10,000-event timeline: {} events, {} bytes ({:.2} MB), rendered to HTML in {:.0} ms",
        events.len(),
        html.len(),
        html.len() as f64 / 1e6,
        took.as_secs_f64() * 1e3
    ));
    assert!(html.len() < 5_000_000, "{} bytes", html.len());
    let json = View::Chrome.render_with(&events, &TraceInfo::default());
    views::validate_chrome(&json).unwrap();
}

#[test]
fn browser_draws_10000_events_within_2_s() {
    let Some(browser) = browser_or_skip("browser_draws_10000_events_within_2_s") else {
        return;
    };
    let events = many_events(10_000);
    let dir = out_dir("big");
    let page = dir.join("10000-events.html");
    let html = View::Html.render_with(
        &events,
        &TraceInfo {
            title: "10,000 events".into(),
            violation: None,
        },
    );
    std::fs::write(&page, &html).unwrap();
    let started = Instant::now();
    let dom = chrome(&browser, &page, &["--dump-dom".to_string()], &dir.join("p"));
    let wall = started.elapsed();
    assert_drawn(&dom, &html, "10,000 events");
    let ms: u64 = body_attr(&dom, "data-render-ms").unwrap().parse().unwrap();
    log(&format!(
        "10,000-event timeline in headless Chromium: script {ms} ms (parse, layout of the data, SVG built); \
         browser start to DOM dump {:.2} s",
        wall.as_secs_f64()
    ));
    assert!(ms < 2000, "drawn in {ms} ms");
}
